"""What the tests share: the test site, builders of events, processes and probes. No tests."""
