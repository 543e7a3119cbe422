"""Unit tests of the site agent: config, runtime, local backend, and transport against a fake gateway."""
