"""Pure tests of the collector's logic."""
