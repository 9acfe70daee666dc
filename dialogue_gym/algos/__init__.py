"""Training agents from dialogue datasets: behaviour cloning (BC), filtered BC and ILQL.

* ``models.py``: base models by name (``"tiny"``, ``"smollm2"``, any HF path) and the shared
  forward that computes the LM head only where a loss needs it;
* ``data.py``: records to token sequences (agent-token masks, per-turn rewards) and prompts, by
  one truncation rule, plus the batch collator;
* ``checkpoint.py``: agent directories (``save_checkpoint`` / ``load_agent``);
* ``bc.py``, ``ilql.py``: a config (a ``transformers.TrainingArguments``), a ``transformers.Trainer``
  subclass, ``train(config) -> Path`` and ``load_agent(path)`` each.

Modules are imported on use, so ``import dialogue_gym`` does not pull in torch.
"""
