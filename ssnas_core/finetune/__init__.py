"""The fine-tune engine: supervised training of a derived network or a baseline."""
