"""Training Muse's LoRA adapters.

- ``rank_data.py``: ranking examples from interaction sequences and the retriever's own candidates.
- ``rank_sft.py``: LlamaRec-style ranker tuning (TRL ``SFTTrainer`` with a label-only loss);
  its docstring holds the commands.

Preference data from logged feedback (SFT / DPO / KTO) arrives with issue 5.
"""
