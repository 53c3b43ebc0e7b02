"""Training: ``runner.py`` runs one run folder start to end and dispatches to one module per method (``sft``, ``dpo``
(DPO and KTO), ``reward_model``, ``ppo``, ``grpo`` (GRPO and RLOO)); ``common.py`` holds what every method shares (model,
LoRA, trainer arguments, fit, save); ``callbacks.py`` writes metrics and status and honours stop requests;
``rewards.py`` the RL reward functions.
"""
