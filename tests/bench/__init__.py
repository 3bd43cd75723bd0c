"""Tests of the microbenchmarks behind ``pymbrl bench``."""
