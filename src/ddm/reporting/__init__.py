"""Figures (matplotlib, an optional extra: pip install 'ddm[plots]')."""
