"""Tests of the networks, their data and their metrics."""
