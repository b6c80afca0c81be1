"""The emulator's routes, one module-level ``router`` per module; ``create_app`` includes them."""
