"""`costwarden bench`: a load generator, bench results, the hardware recommendation and the CI gate."""
