"""UnSAMv2: granularity-controllable Segment Anything, learned without labels."""
__version__ = "0.1.0"
