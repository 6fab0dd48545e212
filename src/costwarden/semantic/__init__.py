"""The semantic cache (the `semantic` extra): a local sentence-embedding model and a vector index.

Nothing here is imported by the base install or the gateway's start unless a deployment turns the
semantic cache on; torch and sentence-transformers come with `pip install 'costwarden[semantic]'`.
"""
