"""Pure tests of the shared contracts."""
