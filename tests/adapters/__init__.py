IP = "10.213.0.1"  # the address of the ``stack`` fixture's host (conftest.py)
