"""The ``ddm`` command line."""
