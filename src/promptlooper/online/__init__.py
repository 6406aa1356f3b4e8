"""Online (A/B) experiments on live traffic."""
