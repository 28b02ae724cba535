from releaseosd.cli import main

main(prog_name="releaseosd")
