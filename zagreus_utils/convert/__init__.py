"""nanotron <-> Hugging Face checkpoint conversion (`zagreus convert`)."""
