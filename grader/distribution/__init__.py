"""What leaves the staff's hands: the student bundle and the Gradescope autograder zip."""
