"""Turning clean recordings into sharded training corpora of distorted/clean pairs."""
