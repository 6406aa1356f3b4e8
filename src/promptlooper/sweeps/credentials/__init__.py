"""Provider credentials stored in a project: sealed at rest, never read back, opened only for
that project's sweeps."""
