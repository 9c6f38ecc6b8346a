"""A small reverse tunnel, server and client, standing in for wstunnel in the tests."""
