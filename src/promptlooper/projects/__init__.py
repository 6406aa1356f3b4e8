"""Projects: the owned container every experiment, agent and dataset belongs to."""
