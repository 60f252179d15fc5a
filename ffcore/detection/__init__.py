"""Detection maths: priors, the box/landmark coder with matching, the MultiBox loss."""
