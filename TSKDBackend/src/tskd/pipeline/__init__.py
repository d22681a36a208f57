"""The TS-KD pipeline as a chain of stages that communicate through files in a run folder."""
