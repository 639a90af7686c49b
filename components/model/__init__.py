"""The model stages: pretrain the GPT decoder, fine-tune a classifier on it, evaluate both.

``gpt`` is the framework-free model; ``lm_module`` and ``classifier_module`` wrap it for
Lightning, fed by ``token_data`` and trained by ``training``'s Trainer with ``callbacks``
and resumable ``checkpoints``; ``model_io`` saves and loads model folders (shared by the
stages that read them). ``evaluate`` scores both models beside ``baselines``. ``params``
holds these stages' sections.

May import :mod:`components.data` and :mod:`components.core`.
"""
