"""Training Muse's LoRA adapters.

- ``rank_data.py``: ranking examples from interaction sequences and the retriever's own candidates.
- ``rank_sft.py``: LlamaRec-style ranker tuning (TRL ``SFTTrainer`` with a label-only loss);
  its docstring holds the commands.

- ``feedback_data.py``: logged impressions + feedback -> SFT / DPO / KTO rows in TRL's formats,
  time-split, de-duplicated and leak-guarded (``muse finetune build-data``).
"""
