"""Tests on the embedded ClickHouse engine (chDB), without Kafka."""
