"""Pure tests of the warehouse's logic."""
