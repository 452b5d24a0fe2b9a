"""The smoke profile's generated sample corpus and the knowledge base it states."""
