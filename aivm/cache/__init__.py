"""Beyond one store: output verification, signing, substituters, push and copy."""
