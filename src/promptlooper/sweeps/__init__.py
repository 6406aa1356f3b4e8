"""Sweeps: experiments over prompt templates × models × parameters, scored and ranked."""
