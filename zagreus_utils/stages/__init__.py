"""One module per stage notebook (notebooks/NN_<key>.ipynb calls its function)."""
