"""What a trial trains and is scored on: tasks, tokenizing, scoring replies, forgetting."""
