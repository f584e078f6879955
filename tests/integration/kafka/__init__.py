"""Tests on the real local Kafka broker (and chDB)."""
