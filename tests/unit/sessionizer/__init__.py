"""Pure tests of the sessionizer's logic."""
