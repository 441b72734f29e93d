/** The web app's entry point: sign in, then the chat. */
import { ChatApp } from "./chat.js";
import { signIn } from "./signin.js";

void signIn().then((session) => new ChatApp(session).start());
