"""Pure core of the control plane: values, state machines, block planning, errors and ports.

Never imports boto3, chalice or adapters; nothing here does I/O or reads a clock.
"""
