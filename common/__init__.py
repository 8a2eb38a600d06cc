"""What every layer shares: user-facing errors, typed flags, logging set-up and artifact names.

The bottom layer: it imports no other ctrflow layer.
"""
