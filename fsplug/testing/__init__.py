"""Test helpers shipped with fsplug (the Aerospike wire-compatible test server)."""
