"""Reports for the thesis: figure style, training curves, ablation, model/size tables, timing."""
