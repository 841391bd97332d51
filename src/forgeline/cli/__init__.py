"""The ``forgeline`` command line."""
