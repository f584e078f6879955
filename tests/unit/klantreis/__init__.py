"""Tests of the composition that need nothing running."""
