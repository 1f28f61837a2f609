"""The student notebook going out: generation, stubs, leak check, jupytext pairing, parameters."""
