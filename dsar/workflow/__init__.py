"""The request workflow: state machine, intake, fan-out, export, erasure."""
