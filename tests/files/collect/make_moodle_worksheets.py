"""Writes two offline grading worksheets ("Download grading worksheet") of Moodle 4 for td_cnn,
for the students of moodle_export.zip, byte for byte as Moodle writes them.

Run from this folder: ``python make_moodle_worksheets.py``.

What Moodle does (mod/assign/gradingtable.php, dataformat/csv with OpenSpout): a UTF-8 BOM,
commas, PHP fputcsv quoting (a field is quoted when it holds a comma, a quote, a newline, a tab
or a space; quotes doubled), '\\n' line ends, empty cells unquoted, dates from userdate() in the
grader's language ('%A, %d %B %Y, %I:%M %p' in English, '%A %d %B %Y, %H:%M' in French) and '-'
where there is none. The columns depend on the assignment's settings:
- worksheet_en.csv: an English Moodle, individual submissions, e-mail shown, feedback comments on.
- worksheet_fr.csv: a French Moodle, group submissions (Groupe), ID number and e-mail shown, saved
  again by a spreadsheet without the BOM, as instructors often do.
"""

from pathlib import Path

EN = (
    "\ufeff"
    'Identifier,"Full name","Email address",Status,Grade,"Maximum Grade","Grade can be changed",'
    '"Last modified (submission)","Last modified (grade)","Feedback comments"\n'
    '"Participant 101234","Alice Martin",alice.martin@etu.example.fr,"Submitted for grading",,20.00,Yes,'
    '"Tuesday, 3 December 2024, 2:05 PM",-,\n'
    '"Participant 101235","Élise Durand",elise.durand@etu.example.fr,'
    '"Submitted for grading - 1 day 15 hours late",,20.00,Yes,"Thursday, 5 December 2024, 9:30 AM",-,\n'
    '"Participant 101236","Karim Benali",karim.benali@etu.example.fr,"Submitted for grading - Graded",12.50,20.00,'
    'Yes,"Monday, 2 December 2024, 11:59 PM","Wednesday, 4 December 2024, 10:00 AM",'
    '"<p>Voir mes ""remarques"", merci</p>"\n'
    '"Participant 101237","Léa Petit",lea.petit@etu.example.fr,"Submitted for grading",,20.00,Yes,'
    '"Tuesday, 3 December 2024, 12:00 PM",-,\n'
    '"Participant 101238","Paul Girard",paul.girard@etu.example.fr,"Submitted for grading",,20.00,Yes,'
    '"Tuesday, 3 December 2024, 12:00 AM",-,\n'
    '"Participant 101239","Zoé Roux",zoe.roux@etu.example.fr,"No submission",,20.00,Yes,-,-,\n'
)

FR = (
    'Identifiant,"Nom complet","Numéro d\'identification","Adresse de courriel",Statut,Groupe,Note,'
    '"Note maximale","La note peut être modifiée","Dernière modification (travail remis)",'
    '"Dernière modification (note)","Feedback par commentaires"\n'
    '"Participant 101234","Alice Martin",21901234,alice.martin@etu.example.fr,"Remis pour évaluation",'
    '"Binôme 1",,"20,00",Oui,"mardi 3 décembre 2024, 14:05",-,\n'
    '"Participant 101235","Élise Durand",21901235,elise.durand@etu.example.fr,"Remis pour évaluation",'
    '"Groupe par défaut",,"20,00",Oui,"jeudi 5 décembre 2024, 09:30",-,\n'
    '"Participant 101238","Paul Girard",21901238,paul.girard@etu.example.fr,"Remis pour évaluation",'
    '"Binôme 2",,"20,00",Oui,"mardi 3 décembre 2024, 00:00",-,\n'
    '"Participant 101240","Nina Leroy",21901240,nina.leroy@etu.example.fr,"Remis pour évaluation",'
    '"Binôme 1",,"20,00",Oui,"mardi 3 décembre 2024, 14:05",-,\n'
    '"Participant 101241","Omar Said",21901241,omar.said@etu.example.fr,"Aucun travail remis",'
    '"Binôme 2",,"20,00",Oui,-,-,\n'
)


def main() -> None:
    here = Path(__file__).parent
    (here / "worksheet_en.csv").write_bytes(EN.encode("utf-8"))
    (here / "worksheet_fr.csv").write_bytes(FR.encode("utf-8"))


if __name__ == "__main__":
    main()
