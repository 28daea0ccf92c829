"""Everything about judging solutions: answer grading, step splitting, step judges, thought
labelling and group advantages. Plain Python (no Ray); the actors wrap it."""
