"""Networks: visual and other modality encoders, the fusion transformer, heads, aggregation, losses, outputs."""
