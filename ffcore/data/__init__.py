"""WIDER FACE data: parsing, validation, augmentation, synthetic generation."""
