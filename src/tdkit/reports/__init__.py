"""What comes out of a grading run: results files, HTML feedback pages, the Moodle export."""
