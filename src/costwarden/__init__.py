"""costwarden: meter, price, attribute and record the cost of every inference request."""

__version__ = "0.1.0"
