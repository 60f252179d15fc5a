"""The phase chain above the engine and the evaluation: phases in sequence with one "phase
complete" rule (``phases``: ``run_phases`` behind ``train --all`` and the study's cells,
``run_phase`` behind the phase notebooks), the model card beside each final checkpoint
(``model_card``) and the scores of a phase's checkpoint on the val set (``scoring``)."""
