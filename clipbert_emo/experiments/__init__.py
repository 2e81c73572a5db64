"""Experiments that answer one question each on SynthEmo, end to end: ``demo`` (does fusion beat each modality,
does dense inference pay off?) and ``label_efficiency`` (does image-text pretraining pay off with 10% of the labels?)."""
