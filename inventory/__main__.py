from cartlib.web import run

if __name__ == "__main__":
    run("inventory.app:create_app", default_port=8001)
