"""The built-in multilingual knowledge base behind the smoke profile's sample corpus.

Compact data (countries, numbers, calendar, colours, animals, everyday facts) in the five
languages of the kit (``eng`` plus the run languages ``ita``, ``spa``, ``fra``, ``por``), and the
sentence templates that turn each fact into text. Every fact type has, per language:

- ``train``: at least four phrasings used in the pretraining documents and in SFT answers. The
  corpus holds one of them out per fact (:func:`zagreus_utils.sample_corpus.corpus.reserved_template`): that
  fact is never written with it in training, other facts are, so the held-out sentence is new
  while its pattern and its fact are both known;
- ``question``: the held-out question (MMLU/ARC-style items), never used in training or SFT;
- ``sft``: the question users ask in the SFT conversations; quiz pages in the pretraining
  documents ask it too, so the answers of the held-out questions follow a question in training.

Per-language tuples are always ordered like :data:`ALL_LANGUAGES`. Names carry their article where
the language needs one (``"il Po"``, ``"la Senna"``); country names carry an article code after a
colon (``"Italia:f"``: feminine, takes ``la``/``l'``; ``m``, ``mp``, ``fp``; no code: no article;
a trailing ``*`` makes Italian use the article after ``in``, as in *nel Regno Unito*). In templates,
``[a|b]`` picks ``b`` when the fact's ``alt`` flag is set (a plural country, a feminine unit).

:func:`facts` turns all of this into a flat list of facts, one dict per fact, with every slot
rendered in the requested language; :func:`render` turns a template and a fact into a sentence.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..pipeline.errors import ZagreusError

ALL_LANGUAGES = ("eng", "ita", "spa", "fra", "por")
LANGUAGES = ("ita", "spa", "fra", "por")  # run languages; eng is the second language of every run
_IDX = {lang: i for i, lang in enumerate(ALL_LANGUAGES)}

# --- countries --------------------------------------------------------------------------------
# id, continent, main language, currency, names (eng, ita, spa, fra, por), capitals (same order)
COUNTRIES = (
    # Europe
    ("italy", "europe", "italian", "euro", ("Italy", "Italia:f", "Italia", "Italie:f", "Itália:f"), ("Rome", "Roma", "Roma", "Rome", "Roma")),
    ("france", "europe", "french", "euro", ("France", "Francia:f", "Francia", "France:f", "França:f"), ("Paris", "Parigi", "París", "Paris", "Paris")),
    ("germany", "europe", "german", "euro", ("Germany", "Germania:f", "Alemania", "Allemagne:f", "Alemanha:f"), ("Berlin", "Berlino", "Berlín", "Berlin", "Berlim")),
    ("spain", "europe", "spanish", "euro", ("Spain", "Spagna:f", "España", "Espagne:f", "Espanha:f"), ("Madrid", "Madrid", "Madrid", "Madrid", "Madri")),
    ("portugal", "europe", "portuguese", "euro", ("Portugal", "Portogallo:m", "Portugal", "Portugal:m", "Portugal"), ("Lisbon", "Lisbona", "Lisboa", "Lisbonne", "Lisboa")),
    ("united_kingdom", "europe", "english", "pound_sterling", ("the United Kingdom", "Regno Unito:m*", "Reino Unido:m", "Royaume-Uni:m", "Reino Unido:m"), ("London", "Londra", "Londres", "Londres", "Londres")),
    ("ireland", "europe", "english", "euro", ("Ireland", "Irlanda:f", "Irlanda", "Irlande:f", "Irlanda:f"), ("Dublin", "Dublino", "Dublín", "Dublin", "Dublin")),
    ("netherlands", "europe", "dutch", "euro", ("the Netherlands", "Paesi Bassi:mp", "Países Bajos:mp", "Pays-Bas:mp", "Países Baixos:mp"), ("Amsterdam", "Amsterdam", "Ámsterdam", "Amsterdam", "Amsterdã")),
    ("austria", "europe", "german", "euro", ("Austria", "Austria:f", "Austria", "Autriche:f", "Áustria:f"), ("Vienna", "Vienna", "Viena", "Vienne", "Viena")),
    ("greece", "europe", "greek", "euro", ("Greece", "Grecia:f", "Grecia", "Grèce:f", "Grécia:f"), ("Athens", "Atene", "Atenas", "Athènes", "Atenas")),
    ("poland", "europe", "polish", "zloty", ("Poland", "Polonia:f", "Polonia", "Pologne:f", "Polônia:f"), ("Warsaw", "Varsavia", "Varsovia", "Varsovie", "Varsóvia")),
    ("sweden", "europe", "swedish", "swedish_krona", ("Sweden", "Svezia:f", "Suecia", "Suède:f", "Suécia:f"), ("Stockholm", "Stoccolma", "Estocolmo", "Stockholm", "Estocolmo")),
    ("norway", "europe", "norwegian", "norwegian_krone", ("Norway", "Norvegia:f", "Noruega", "Norvège:f", "Noruega:f"), ("Oslo",) * 5),
    ("denmark", "europe", "danish", "danish_krone", ("Denmark", "Danimarca:f", "Dinamarca", "Danemark:m", "Dinamarca:f"), ("Copenhagen", "Copenaghen", "Copenhague", "Copenhague", "Copenhague")),
    ("finland", "europe", "finnish", "euro", ("Finland", "Finlandia:f", "Finlandia", "Finlande:f", "Finlândia:f"), ("Helsinki", "Helsinki", "Helsinki", "Helsinki", "Helsinque")),
    ("russia", "europe", "russian", "ruble", ("Russia", "Russia:f", "Rusia", "Russie:f", "Rússia:f"), ("Moscow", "Mosca", "Moscú", "Moscou", "Moscou")),
    ("ukraine", "europe", "ukrainian", "hryvnia", ("Ukraine", "Ucraina:f", "Ucrania", "Ukraine:f", "Ucrânia:f"), ("Kyiv", "Kiev", "Kiev", "Kiev", "Kiev")),
    ("czech_republic", "europe", "czech", "czech_koruna", ("the Czech Republic", "Repubblica Ceca:f*", "República Checa:f", "République tchèque:f", "República Tcheca:f"), ("Prague", "Praga", "Praga", "Prague", "Praga")),
    ("hungary", "europe", "hungarian", "forint", ("Hungary", "Ungheria:f", "Hungría", "Hongrie:f", "Hungria:f"), ("Budapest", "Budapest", "Budapest", "Budapest", "Budapeste")),
    ("romania", "europe", "romanian", "leu", ("Romania", "Romania:f", "Rumania", "Roumanie:f", "Romênia:f"), ("Bucharest", "Bucarest", "Bucarest", "Bucarest", "Bucareste")),
    ("croatia", "europe", "croatian", "euro", ("Croatia", "Croazia:f", "Croacia", "Croatie:f", "Croácia:f"), ("Zagreb", "Zagabria", "Zagreb", "Zagreb", "Zagreb")),
    ("iceland", "europe", "icelandic", "icelandic_krona", ("Iceland", "Islanda:f", "Islandia", "Islande:f", "Islândia:f"), ("Reykjavik", "Reykjavík", "Reikiavik", "Reykjavik", "Reykjavík")),
    ("serbia", "europe", "serbian", "serbian_dinar", ("Serbia", "Serbia:f", "Serbia", "Serbie:f", "Sérvia:f"), ("Belgrade", "Belgrado", "Belgrado", "Belgrade", "Belgrado")),
    ("albania", "europe", "albanian", "lek", ("Albania", "Albania:f", "Albania", "Albanie:f", "Albânia:f"), ("Tirana",) * 5),
    # Asia
    ("turkey", "asia", "turkish", "turkish_lira", ("Turkey", "Turchia:f", "Turquía", "Turquie:f", "Turquia:f"), ("Ankara", "Ankara", "Ankara", "Ankara", "Ancara")),
    ("japan", "asia", "japanese", "yen", ("Japan", "Giappone:m", "Japón", "Japon:m", "Japão:m"), ("Tokyo", "Tokyo", "Tokio", "Tokyo", "Tóquio")),
    ("china", "asia", "chinese", "yuan", ("China", "Cina:f", "China", "Chine:f", "China:f"), ("Beijing", "Pechino", "Pekín", "Pékin", "Pequim")),
    ("india", "asia", "hindi", "indian_rupee", ("India", "India:f", "India", "Inde:f", "Índia:f"), ("New Delhi", "Nuova Delhi", "Nueva Delhi", "New Delhi", "Nova Délhi")),
    ("south_korea", "asia", "korean", "won", ("South Korea", "Corea del Sud:f", "Corea del Sur", "Corée du Sud:f", "Coreia do Sul:f"), ("Seoul", "Seul", "Seúl", "Séoul", "Seul")),
    ("vietnam", "asia", "vietnamese", "dong", ("Vietnam", "Vietnam:m", "Vietnam", "Viêt Nam:m", "Vietnã:m"), ("Hanoi", "Hanoi", "Hanói", "Hanoï", "Hanói")),
    ("thailand", "asia", "thai", "baht", ("Thailand", "Thailandia:f", "Tailandia", "Thaïlande:f", "Tailândia:f"), ("Bangkok",) * 5),
    ("indonesia", "asia", "indonesian", "rupiah", ("Indonesia", "Indonesia:f", "Indonesia", "Indonésie:f", "Indonésia:f"), ("Jakarta", "Giacarta", "Yakarta", "Jakarta", "Jacarta")),
    ("philippines", "asia", "filipino", "philippine_peso", ("the Philippines", "Filippine:fp", "Filipinas", "Philippines:fp", "Filipinas:fp"), ("Manila", "Manila", "Manila", "Manille", "Manila")),
    ("iran", "asia", "persian", "iranian_rial", ("Iran", "Iran:m", "Irán", "Iran:m", "Irã:m"), ("Tehran", "Teheran", "Teherán", "Téhéran", "Teerã")),
    ("saudi_arabia", "asia", "arabic", "saudi_riyal", ("Saudi Arabia", "Arabia Saudita:f", "Arabia Saudita", "Arabie saoudite:f", "Arábia Saudita:f"), ("Riyadh", "Riad", "Riad", "Riyad", "Riad")),
    ("pakistan", "asia", "urdu", "pakistani_rupee", ("Pakistan", "Pakistan:m", "Pakistán", "Pakistan:m", "Paquistão:m"), ("Islamabad",) * 5),
    ("nepal", "asia", "nepali", "nepalese_rupee", ("Nepal", "Nepal:m", "Nepal", "Népal:m", "Nepal:m"), ("Kathmandu", "Katmandu", "Katmandú", "Katmandou", "Catmandu")),
    ("mongolia", "asia", "mongolian", "tugrik", ("Mongolia", "Mongolia:f", "Mongolia", "Mongolie:f", "Mongólia:f"), ("Ulaanbaatar", "Ulan Bator", "Ulán Bator", "Oulan-Bator", "Ulan Bator")),
    # Africa
    ("egypt", "africa", "arabic", "egyptian_pound", ("Egypt", "Egitto:m", "Egipto", "Égypte:f", "Egito:m"), ("Cairo", "il Cairo", "El Cairo", "Le Caire", "o Cairo")),
    ("morocco", "africa", "arabic", "moroccan_dirham", ("Morocco", "Marocco:m", "Marruecos", "Maroc:m", "Marrocos:m"), ("Rabat",) * 5),
    ("nigeria", "africa", "english", "naira", ("Nigeria", "Nigeria:f", "Nigeria", "Nigeria:m", "Nigéria:f"), ("Abuja",) * 5),
    ("kenya", "africa", "swahili", "kenyan_shilling", ("Kenya", "Kenya:m", "Kenia", "Kenya:m", "Quênia:m"), ("Nairobi", "Nairobi", "Nairobi", "Nairobi", "Nairóbi")),
    ("ethiopia", "africa", "amharic", "birr", ("Ethiopia", "Etiopia:f", "Etiopía", "Éthiopie:f", "Etiópia:f"), ("Addis Ababa", "Addis Abeba", "Adís Abeba", "Addis-Abeba", "Adis Abeba")),
    ("ghana", "africa", "english", "cedi", ("Ghana", "Ghana:m", "Ghana", "Ghana:m", "Gana"), ("Accra", "Accra", "Acra", "Accra", "Acra")),
    ("senegal", "africa", "french", "cfa_franc", ("Senegal", "Senegal:m", "Senegal", "Sénégal:m", "Senegal:m"), ("Dakar", "Dakar", "Dakar", "Dakar", "Dacar")),
    ("tanzania", "africa", "swahili", "tanzanian_shilling", ("Tanzania", "Tanzania:f", "Tanzania", "Tanzanie:f", "Tanzânia:f"), ("Dodoma",) * 5),
    ("angola", "africa", "portuguese", "kwanza", ("Angola", "Angola:f", "Angola", "Angola:m", "Angola"), ("Luanda",) * 5),
    ("mozambique", "africa", "portuguese", "metical", ("Mozambique", "Mozambico:m", "Mozambique", "Mozambique:m", "Moçambique"), ("Maputo",) * 5),
    ("algeria", "africa", "arabic", "algerian_dinar", ("Algeria", "Algeria:f", "Argelia", "Algérie:f", "Argélia:f"), ("Algiers", "Algeri", "Argel", "Alger", "Argel")),
    ("tunisia", "africa", "arabic", "tunisian_dinar", ("Tunisia", "Tunisia:f", "Túnez", "Tunisie:f", "Tunísia:f"), ("Tunis", "Tunisi", "Túnez", "Tunis", "Túnis")),
    # North America
    ("united_states", "north_america", "english", "us_dollar", ("the United States", "Stati Uniti:mp", "Estados Unidos", "États-Unis:mp", "Estados Unidos:mp"), ("Washington",) * 5),
    ("canada", "north_america", "english", "canadian_dollar", ("Canada", "Canada:m", "Canadá", "Canada:m", "Canadá:m"), ("Ottawa",) * 5),
    ("mexico", "north_america", "spanish", "mexican_peso", ("Mexico", "Messico:m", "México", "Mexique:m", "México:m"), ("Mexico City", "Città del Messico", "Ciudad de México", "Mexico", "Cidade do México")),
    ("cuba", "north_america", "spanish", "cuban_peso", ("Cuba",) * 5, ("Havana", "l'Avana", "La Habana", "La Havane", "Havana")),
    # South America
    ("brazil", "south_america", "portuguese", "real", ("Brazil", "Brasile:m", "Brasil", "Brésil:m", "Brasil:m"), ("Brasília", "Brasilia", "Brasilia", "Brasilia", "Brasília")),
    ("argentina", "south_america", "spanish", "argentine_peso", ("Argentina", "Argentina:f", "Argentina", "Argentine:f", "Argentina:f"), ("Buenos Aires",) * 5),
    ("chile", "south_america", "spanish", "chilean_peso", ("Chile", "Cile:m", "Chile", "Chili:m", "Chile:m"), ("Santiago", "Santiago del Cile", "Santiago de Chile", "Santiago du Chili", "Santiago")),
    ("peru", "south_america", "spanish", "sol", ("Peru", "Perù:m", "Perú", "Pérou:m", "Peru:m"), ("Lima",) * 5),
    ("colombia", "south_america", "spanish", "colombian_peso", ("Colombia", "Colombia:f", "Colombia", "Colombie:f", "Colômbia:f"), ("Bogotá", "Bogotà", "Bogotá", "Bogota", "Bogotá")),
    ("venezuela", "south_america", "spanish", "bolivar", ("Venezuela", "Venezuela:m", "Venezuela", "Venezuela:m", "Venezuela:f"), ("Caracas",) * 5),
    ("uruguay", "south_america", "spanish", "uruguayan_peso", ("Uruguay", "Uruguay:m", "Uruguay", "Uruguay:m", "Uruguai:m"), ("Montevideo", "Montevideo", "Montevideo", "Montevideo", "Montevidéu")),
    ("ecuador", "south_america", "spanish", "us_dollar", ("Ecuador", "Ecuador:m", "Ecuador", "Équateur:m", "Equador:m"), ("Quito",) * 5),
    ("paraguay", "south_america", "spanish", "guarani", ("Paraguay", "Paraguay:m", "Paraguay", "Paraguay:m", "Paraguai:m"), ("Asunción", "Asunción", "Asunción", "Asuncion", "Assunção")),
    # Oceania
    ("australia", "oceania", "english", "australian_dollar", ("Australia", "Australia:f", "Australia", "Australie:f", "Austrália:f"), ("Canberra", "Canberra", "Canberra", "Canberra", "Camberra")),
    ("new_zealand", "oceania", "english", "new_zealand_dollar", ("New Zealand", "Nuova Zelanda:f", "Nueva Zelanda", "Nouvelle-Zélande:f", "Nova Zelândia:f"), ("Wellington",) * 5),
)

# name, "in <continent>", "of <continent>" per language
CONTINENTS = {
    "europe": (("Europe", "in Europe", "of Europe"), ("Europa", "in Europa", "dell'Europa"), ("Europa", "en Europa", "de Europa"), ("Europe", "en Europe", "d'Europe"), ("Europa", "na Europa", "da Europa")),
    "asia": (("Asia", "in Asia", "of Asia"), ("Asia", "in Asia", "dell'Asia"), ("Asia", "en Asia", "de Asia"), ("Asie", "en Asie", "d'Asie"), ("Ásia", "na Ásia", "da Ásia")),
    "africa": (("Africa", "in Africa", "of Africa"), ("Africa", "in Africa", "dell'Africa"), ("África", "en África", "de África"), ("Afrique", "en Afrique", "d'Afrique"), ("África", "na África", "da África")),
    "north_america": (("North America", "in North America", "of North America"), ("America del Nord", "in America del Nord", "dell'America del Nord"), ("América del Norte", "en América del Norte", "de América del Norte"), ("Amérique du Nord", "en Amérique du Nord", "d'Amérique du Nord"), ("América do Norte", "na América do Norte", "da América do Norte")),
    "south_america": (("South America", "in South America", "of South America"), ("America del Sud", "in America del Sud", "dell'America del Sud"), ("América del Sur", "en América del Sur", "de América del Sur"), ("Amérique du Sud", "en Amérique du Sud", "d'Amérique du Sud"), ("América do Sul", "na América do Sul", "da América do Sul")),
    "oceania": (("Oceania", "in Oceania", "of Oceania"), ("Oceania", "in Oceania", "dell'Oceania"), ("Oceanía", "en Oceanía", "de Oceanía"), ("Océanie", "en Océanie", "d'Océanie"), ("Oceania", "na Oceania", "da Oceania")),
}

# language names, lower case where the language writes them so (the article is added per language)
LANGUAGE_NAMES = {
    "italian": ("Italian", "italiano", "italiano", "italien", "italiano"),
    "french": ("French", "francese", "francés", "français", "francês"),
    "german": ("German", "tedesco", "alemán", "allemand", "alemão"),
    "spanish": ("Spanish", "spagnolo", "español", "espagnol", "espanhol"),
    "portuguese": ("Portuguese", "portoghese", "portugués", "portugais", "português"),
    "english": ("English", "inglese", "inglés", "anglais", "inglês"),
    "dutch": ("Dutch", "olandese", "neerlandés", "néerlandais", "neerlandês"),
    "greek": ("Greek", "greco", "griego", "grec", "grego"),
    "polish": ("Polish", "polacco", "polaco", "polonais", "polonês"),
    "swedish": ("Swedish", "svedese", "sueco", "suédois", "sueco"),
    "norwegian": ("Norwegian", "norvegese", "noruego", "norvégien", "norueguês"),
    "danish": ("Danish", "danese", "danés", "danois", "dinamarquês"),
    "finnish": ("Finnish", "finlandese", "finés", "finnois", "finlandês"),
    "russian": ("Russian", "russo", "ruso", "russe", "russo"),
    "ukrainian": ("Ukrainian", "ucraino", "ucraniano", "ukrainien", "ucraniano"),
    "czech": ("Czech", "ceco", "checo", "tchèque", "tcheco"),
    "hungarian": ("Hungarian", "ungherese", "húngaro", "hongrois", "húngaro"),
    "romanian": ("Romanian", "rumeno", "rumano", "roumain", "romeno"),
    "croatian": ("Croatian", "croato", "croata", "croate", "croata"),
    "icelandic": ("Icelandic", "islandese", "islandés", "islandais", "islandês"),
    "serbian": ("Serbian", "serbo", "serbio", "serbe", "sérvio"),
    "albanian": ("Albanian", "albanese", "albanés", "albanais", "albanês"),
    "turkish": ("Turkish", "turco", "turco", "turc", "turco"),
    "japanese": ("Japanese", "giapponese", "japonés", "japonais", "japonês"),
    "chinese": ("Chinese", "cinese", "chino", "chinois", "chinês"),
    "hindi": ("Hindi", "hindi", "hindi", "hindi", "híndi"),
    "korean": ("Korean", "coreano", "coreano", "coréen", "coreano"),
    "vietnamese": ("Vietnamese", "vietnamita", "vietnamita", "vietnamien", "vietnamita"),
    "thai": ("Thai", "thailandese", "tailandés", "thaï", "tailandês"),
    "indonesian": ("Indonesian", "indonesiano", "indonesio", "indonésien", "indonésio"),
    "filipino": ("Filipino", "filippino", "filipino", "filipino", "filipino"),
    "persian": ("Persian", "persiano", "persa", "persan", "persa"),
    "arabic": ("Arabic", "arabo", "árabe", "arabe", "árabe"),
    "urdu": ("Urdu", "urdu", "urdu", "ourdou", "urdu"),
    "nepali": ("Nepali", "nepalese", "nepalí", "népalais", "nepalês"),
    "mongolian": ("Mongolian", "mongolo", "mongol", "mongol", "mongol"),
    "swahili": ("Swahili", "swahili", "suajili", "swahili", "suaíli"),
    "amharic": ("Amharic", "amarico", "amárico", "amharique", "amárico"),
}

# currencies, with their article
CURRENCIES = {
    "euro": ("the euro", "l'euro", "el euro", "l'euro", "o euro"),
    "pound_sterling": ("the pound sterling", "la sterlina", "la libra esterlina", "la livre sterling", "a libra esterlina"),
    "swedish_krona": ("the Swedish krona", "la corona svedese", "la corona sueca", "la couronne suédoise", "a coroa sueca"),
    "norwegian_krone": ("the Norwegian krone", "la corona norvegese", "la corona noruega", "la couronne norvégienne", "a coroa norueguesa"),
    "danish_krone": ("the Danish krone", "la corona danese", "la corona danesa", "la couronne danoise", "a coroa dinamarquesa"),
    "icelandic_krona": ("the Icelandic króna", "la corona islandese", "la corona islandesa", "la couronne islandaise", "a coroa islandesa"),
    "czech_koruna": ("the Czech koruna", "la corona ceca", "la corona checa", "la couronne tchèque", "a coroa tcheca"),
    "zloty": ("the złoty", "lo złoty", "el esloti", "le złoty", "o złoty"),
    "ruble": ("the Russian ruble", "il rublo russo", "el rublo ruso", "le rouble russe", "o rublo russo"),
    "hryvnia": ("the hryvnia", "la grivnia", "la grivna", "la hryvnia", "a grívnia"),
    "forint": ("the forint", "il fiorino ungherese", "el forinto", "le forint", "o florim húngaro"),
    "leu": ("the Romanian leu", "il leu romeno", "el leu rumano", "le leu roumain", "o leu romeno"),
    "serbian_dinar": ("the Serbian dinar", "il dinaro serbo", "el dinar serbio", "le dinar serbe", "o dinar sérvio"),
    "lek": ("the Albanian lek", "il lek albanese", "el lek albanés", "le lek albanais", "o lek albanês"),
    "turkish_lira": ("the Turkish lira", "la lira turca", "la lira turca", "la livre turque", "a lira turca"),
    "yen": ("the yen", "lo yen", "el yen", "le yen", "o iene"),
    "yuan": ("the yuan", "lo yuan", "el yuan", "le yuan", "o yuan"),
    "indian_rupee": ("the Indian rupee", "la rupia indiana", "la rupia india", "la roupie indienne", "a rupia indiana"),
    "won": ("the won", "il won", "el won", "le won", "o won"),
    "dong": ("the dong", "il dong", "el dong", "le dong", "o dong"),
    "baht": ("the baht", "il baht", "el baht", "le baht", "o baht"),
    "rupiah": ("the rupiah", "la rupia indonesiana", "la rupia indonesia", "la roupie indonésienne", "a rupia indonésia"),
    "philippine_peso": ("the Philippine peso", "il peso filippino", "el peso filipino", "le peso philippin", "o peso filipino"),
    "iranian_rial": ("the Iranian rial", "il rial iraniano", "el rial iraní", "le rial iranien", "o rial iraniano"),
    "saudi_riyal": ("the Saudi riyal", "il riyal saudita", "el riyal saudí", "le riyal saoudien", "o rial saudita"),
    "pakistani_rupee": ("the Pakistani rupee", "la rupia pakistana", "la rupia pakistaní", "la roupie pakistanaise", "a rupia paquistanesa"),
    "nepalese_rupee": ("the Nepalese rupee", "la rupia nepalese", "la rupia nepalí", "la roupie népalaise", "a rupia nepalesa"),
    "tugrik": ("the tögrög", "il tugrik", "el tugrik", "le tugrik", "o tugrik"),
    "egyptian_pound": ("the Egyptian pound", "la sterlina egiziana", "la libra egipcia", "la livre égyptienne", "a libra egípcia"),
    "moroccan_dirham": ("the Moroccan dirham", "il dirham marocchino", "el dírham marroquí", "le dirham marocain", "o dirham marroquino"),
    "naira": ("the naira", "la naira", "el naira", "le naira", "a naira"),
    "kenyan_shilling": ("the Kenyan shilling", "lo scellino keniota", "el chelín keniano", "le shilling kényan", "o xelim queniano"),
    "birr": ("the birr", "il birr", "el birr", "le birr", "o birr"),
    "cedi": ("the cedi", "il cedi", "el cedi", "le cedi", "o cedi"),
    "cfa_franc": ("the CFA franc", "il franco CFA", "el franco CFA", "le franc CFA", "o franco CFA"),
    "tanzanian_shilling": ("the Tanzanian shilling", "lo scellino tanzaniano", "el chelín tanzano", "le shilling tanzanien", "o xelim tanzaniano"),
    "kwanza": ("the kwanza", "il kwanza", "el kwanza", "le kwanza", "o kwanza"),
    "metical": ("the metical", "il metical", "el metical", "le metical", "o metical"),
    "algerian_dinar": ("the Algerian dinar", "il dinaro algerino", "el dinar argelino", "le dinar algérien", "o dinar argelino"),
    "tunisian_dinar": ("the Tunisian dinar", "il dinaro tunisino", "el dinar tunecino", "le dinar tunisien", "o dinar tunisiano"),
    "us_dollar": ("the US dollar", "il dollaro statunitense", "el dólar estadounidense", "le dollar américain", "o dólar americano"),
    "canadian_dollar": ("the Canadian dollar", "il dollaro canadese", "el dólar canadiense", "le dollar canadien", "o dólar canadense"),
    "mexican_peso": ("the Mexican peso", "il peso messicano", "el peso mexicano", "le peso mexicain", "o peso mexicano"),
    "cuban_peso": ("the Cuban peso", "il peso cubano", "el peso cubano", "le peso cubain", "o peso cubano"),
    "real": ("the Brazilian real", "il real brasiliano", "el real brasileño", "le réal brésilien", "o real brasileiro"),
    "argentine_peso": ("the Argentine peso", "il peso argentino", "el peso argentino", "le peso argentin", "o peso argentino"),
    "chilean_peso": ("the Chilean peso", "il peso cileno", "el peso chileno", "le peso chilien", "o peso chileno"),
    "sol": ("the Peruvian sol", "il sol peruviano", "el sol peruano", "le sol péruvien", "o sol peruano"),
    "colombian_peso": ("the Colombian peso", "il peso colombiano", "el peso colombiano", "le peso colombien", "o peso colombiano"),
    "bolivar": ("the bolívar", "il bolívar", "el bolívar", "le bolivar", "o bolívar"),
    "uruguayan_peso": ("the Uruguayan peso", "il peso uruguaiano", "el peso uruguayo", "le peso uruguayen", "o peso uruguaio"),
    "guarani": ("the guaraní", "il guaraní", "el guaraní", "le guarani", "o guarani"),
    "australian_dollar": ("the Australian dollar", "il dollaro australiano", "el dólar australiano", "le dollar australien", "o dólar australiano"),
    "new_zealand_dollar": ("the New Zealand dollar", "il dollaro neozelandese", "el dólar neozelandés", "le dollar néo-zélandais", "o dólar neozelandês"),
}

# a major river of the country, with its article
RIVERS = {
    "italy": ("the Po", "il Po", "el Po", "le Pô", "o Pó"),
    "france": ("the Seine", "la Senna", "el Sena", "la Seine", "o Sena"),
    "germany": ("the Rhine", "il Reno", "el Rin", "le Rhin", "o Reno"),
    "spain": ("the Ebro", "l'Ebro", "el Ebro", "l'Èbre", "o Ebro"),
    "portugal": ("the Tagus", "il Tago", "el Tajo", "le Tage", "o Tejo"),
    "united_kingdom": ("the Thames", "il Tamigi", "el Támesis", "la Tamise", "o Tâmisa"),
    "ireland": ("the Shannon", "lo Shannon", "el Shannon", "le Shannon", "o Shannon"),
    "austria": ("the Danube", "il Danubio", "el Danubio", "le Danube", "o Danúbio"),
    "poland": ("the Vistula", "la Vistola", "el Vístula", "la Vistule", "o Vístula"),
    "russia": ("the Volga", "il Volga", "el Volga", "la Volga", "o Volga"),
    "ukraine": ("the Dnieper", "il Dnepr", "el Dniéper", "le Dniepr", "o Dniepre"),
    "egypt": ("the Nile", "il Nilo", "el Nilo", "le Nil", "o Nilo"),
    "nigeria": ("the Niger", "il Niger", "el Níger", "le Niger", "o Níger"),
    "mozambique": ("the Zambezi", "lo Zambesi", "el Zambeze", "le Zambèze", "o Zambeze"),
    "china": ("the Yangtze", "lo Yangtze", "el Yangtsé", "le Yangtsé", "o Yangtzé"),
    "india": ("the Ganges", "il Gange", "el Ganges", "le Gange", "o Ganges"),
    "vietnam": ("the Mekong", "il Mekong", "el Mekong", "le Mékong", "o Mekong"),
    "united_states": ("the Mississippi", "il Mississippi", "el Misisipi", "le Mississippi", "o Mississippi"),
    "canada": ("the Saint Lawrence", "il San Lorenzo", "el San Lorenzo", "le Saint-Laurent", "o São Lourenço"),
    "brazil": ("the Amazon", "il Rio delle Amazzoni", "el Amazonas", "l'Amazone", "o Amazonas"),
    "argentina": ("the Paraná", "il Paraná", "el Paraná", "le Paraná", "o Paraná"),
}

# a famous mountain of the country, with its article
MOUNTAINS = {
    "italy": ("Mount Etna", "l'Etna", "el Etna", "l'Etna", "o Etna"),
    "france": ("Mont Blanc", "il Monte Bianco", "el Mont Blanc", "le mont Blanc", "o Monte Branco"),
    "spain": ("Mount Teide", "il Teide", "el Teide", "le Teide", "o Teide"),
    "germany": ("the Zugspitze", "lo Zugspitze", "el Zugspitze", "la Zugspitze", "o Zugspitze"),
    "greece": ("Mount Olympus", "il monte Olimpo", "el monte Olimpo", "le mont Olympe", "o monte Olimpo"),
    "russia": ("Mount Elbrus", "l'Elbrus", "el Elbrus", "l'Elbrouz", "o Elbrus"),
    "turkey": ("Mount Ararat", "il monte Ararat", "el monte Ararat", "le mont Ararat", "o monte Ararat"),
    "japan": ("Mount Fuji", "il monte Fuji", "el monte Fuji", "le mont Fuji", "o monte Fuji"),
    "nepal": ("Mount Everest", "l'Everest", "el Everest", "l'Everest", "o Everest"),
    "tanzania": ("Mount Kilimanjaro", "il Kilimangiaro", "el Kilimanjaro", "le Kilimandjaro", "o Kilimanjaro"),
    "united_states": ("Denali", "il Denali", "el Denali", "le Denali", "o Denali"),
    "mexico": ("Popocatépetl", "il Popocatépetl", "el Popocatépetl", "le Popocatépetl", "o Popocatépetl"),
    "ecuador": ("Chimborazo", "il Chimborazo", "el Chimborazo", "le Chimborazo", "o Chimborazo"),
    "argentina": ("Aconcagua", "l'Aconcagua", "el Aconcagua", "l'Aconcagua", "o Aconcágua"),
}

# --- numbers, calendar ------------------------------------------------------------------------
_ONES = {
    "eng": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
    "ita": ("zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove", "dieci",
            "undici", "dodici", "tredici", "quattordici", "quindici", "sedici", "diciassette", "diciotto", "diciannove"),
    "spa": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez",
            "once", "doce", "trece", "catorce", "quince", "dieciséis", "diecisiete", "dieciocho", "diecinueve",
            "veinte", "veintiuno", "veintidós", "veintitrés", "veinticuatro", "veinticinco", "veintiséis",
            "veintisiete", "veintiocho", "veintinueve"),
    "fra": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
            "onze", "douze", "treize", "quatorze", "quinze", "seize"),
    "por": ("zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove", "dez",
            "onze", "doze", "treze", "catorze", "quinze", "dezesseis", "dezessete", "dezoito", "dezenove"),
}
_TENS = {
    "eng": ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"),
    "ita": ("venti", "trenta", "quaranta", "cinquanta", "sessanta", "settanta", "ottanta", "novanta"),
    "spa": ("veinte", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta", "ochenta", "noventa"),
    "fra": ("vingt", "trente", "quarante", "cinquante", "soixante"),
    "por": ("vinte", "trinta", "quarenta", "cinquenta", "sessenta", "setenta", "oitenta", "noventa"),
}
_HUNDRED = {"eng": "one hundred", "ita": "cento", "spa": "cien", "fra": "cent", "por": "cem"}

DAYS = (
    ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    ("lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"),
    ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira", "sábado", "domingo"),
)
MONTHS = (
    ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"),
    ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre", "novembre", "dicembre"),
    ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"),
    ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"),
    ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro", "novembro", "dezembro"),
)
# ordinals 1-12 as used before a masculine noun ("the third month")
ORDINALS = (
    ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth"),
    ("primo", "secondo", "terzo", "quarto", "quinto", "sesto", "settimo", "ottavo", "nono", "decimo", "undicesimo", "dodicesimo"),
    ("primer", "segundo", "tercer", "cuarto", "quinto", "sexto", "séptimo", "octavo", "noveno", "décimo", "undécimo", "duodécimo"),
    ("premier", "deuxième", "troisième", "quatrième", "cinquième", "sixième", "septième", "huitième", "neuvième", "dixième", "onzième", "douzième"),
    ("primeiro", "segundo", "terceiro", "quarto", "quinto", "sexto", "sétimo", "oitavo", "nono", "décimo", "décimo primeiro", "décimo segundo"),
)

# --- colours, animals, counts, everyday facts -------------------------------------------------
# colour: English, then (masculine, feminine) per language
COLOURS = {
    "red": ("red", ("rosso", "rossa"), ("rojo", "roja"), ("rouge", "rouge"), ("vermelho", "vermelha")),
    "blue": ("blue", ("blu", "blu"), ("azul", "azul"), ("bleu", "bleue"), ("azul", "azul")),
    "green": ("green", ("verde", "verde"), ("verde", "verde"), ("vert", "verte"), ("verde", "verde")),
    "yellow": ("yellow", ("giallo", "gialla"), ("amarillo", "amarilla"), ("jaune", "jaune"), ("amarelo", "amarela")),
    "white": ("white", ("bianco", "bianca"), ("blanco", "blanca"), ("blanc", "blanche"), ("branco", "branca")),
    "black": ("black", ("nero", "nera"), ("negro", "negra"), ("noir", "noire"), ("preto", "preta")),
    "orange": ("orange", ("arancione", "arancione"), ("naranja", "naranja"), ("orange", "orange"), ("laranja", "laranja")),
    "brown": ("brown", ("marrone", "marrone"), ("marrón", "marrón"), ("marron", "marron"), ("marrom", "marrom")),
    "grey": ("grey", ("grigio", "grigia"), ("gris", "gris"), ("gris", "grise"), ("cinzento", "cinzenta")),
}
# thing, its colour, the thing per language (":f" feminine)
COLOUR_FACTS = (
    ("sky", "blue", ("the sky", "il cielo", "el cielo", "le ciel", "o céu")),
    ("grass", "green", ("grass", "l'erba:f", "la hierba:f", "l'herbe:f", "a grama:f")),
    ("snow", "white", ("snow", "la neve:f", "la nieve:f", "la neige:f", "a neve:f")),
    ("coal", "black", ("coal", "il carbone", "el carbón", "le charbon", "o carvão")),
    ("lemon", "yellow", ("a lemon", "il limone", "el limón", "le citron", "o limão")),
    ("blood", "red", ("blood", "il sangue", "la sangre:f", "le sang", "o sangue")),
    ("milk", "white", ("milk", "il latte", "la leche:f", "le lait", "o leite")),
    ("chocolate", "brown", ("chocolate", "il cioccolato", "el chocolate", "le chocolat", "o chocolate")),
    ("ash", "grey", ("ash", "la cenere:f", "la ceniza:f", "la cendre:f", "a cinza:f")),
    ("tomato", "red", ("a ripe tomato", "il pomodoro maturo", "el tomate maduro", "la tomate mûre:f", "o tomate maduro")),
    ("carrot", "orange", ("a carrot", "la carota:f", "la zanahoria:f", "la carotte:f", "a cenoura:f")),
    ("banana", "yellow", ("a ripe banana", "la banana matura:f", "el plátano maduro", "la banane mûre:f", "a banana madura:f")),
    ("crow", "black", ("a crow", "il corvo", "el cuervo", "le corbeau", "o corvo")),
)
# animal, legs (None: not a fact), the animal per language, the sound it makes (None: none)
ANIMALS = (
    ("dog", 4, ("the dog", "il cane", "el perro", "le chien", "o cachorro"), ("barks", "abbaia", "ladra", "aboie", "late")),
    ("cat", 4, ("the cat", "il gatto", "el gato", "le chat", "o gato"), ("meows", "miagola", "maúlla", "miaule", "mia")),
    ("cow", 4, ("the cow", "la mucca", "la vaca", "la vache", "a vaca"), ("moos", "muggisce", "muge", "meugle", "muge")),
    ("horse", 4, ("the horse", "il cavallo", "el caballo", "le cheval", "o cavalo"), ("neighs", "nitrisce", "relincha", "hennit", "relincha")),
    ("sheep", 4, ("the sheep", "la pecora", "la oveja", "le mouton", "a ovelha"), ("bleats", "bela", "bala", "bêle", "bale")),
    ("duck", 2, ("the duck", "l'anatra", "el pato", "le canard", "o pato"), ("quacks", "starnazza", "grazna", "cancane", "grasna")),
    ("lion", 4, ("the lion", "il leone", "el león", "le lion", "o leão"), ("roars", "ruggisce", "ruge", "rugit", "ruge")),
    ("rooster", 2, ("the rooster", "il gallo", "el gallo", "le coq", "o galo"), ("crows", "canta", "canta", "chante", "canta")),
    ("pig", 4, ("the pig", "il maiale", "el cerdo", "le cochon", "o porco"), ("grunts", "grugnisce", "gruñe", "grogne", "grunhe")),
    ("wolf", 4, ("the wolf", "il lupo", "el lobo", "le loup", "o lobo"), ("howls", "ulula", "aúlla", "hurle", "uiva")),
    ("bee", 6, ("the bee", "l'ape", "la abeja", "l'abeille", "a abelha"), ("buzzes", "ronza", "zumba", "bourdonne", "zumbe")),
    ("hen", 2, ("the hen", "la gallina", "la gallina", "la poule", "a galinha"), ("clucks", "chioccia", "cacarea", "caquette", "cacareja")),
    ("frog", 4, ("the frog", "la rana", "la rana", "la grenouille", "a rã"), ("croaks", "gracida", "croa", "coasse", "coaxa")),
    ("elephant", 4, ("the elephant", "l'elefante", "el elefante", "l'éléphant", "o elefante"), ("trumpets", "barrisce", "barrita", "barrit", "barre")),
    ("donkey", 4, ("the donkey", "l'asino", "el burro", "l'âne", "o burro"), ("brays", "raglia", "rebuzna", "brait", "zurra")),
    ("snake", None, ("the snake", "il serpente", "la serpiente", "le serpent", "a cobra"), ("hisses", "sibila", "sisea", "siffle", "sibila")),
    ("spider", 8, ("the spider", "il ragno", "la araña", "l'araignée", "a aranha"), None),
    ("ant", 6, ("the ant", "la formica", "la hormiga", "la fourmi", "a formiga"), None),
    ("owl", 2, ("the owl", "il gufo", "el búho", "le hibou", "a coruja"), None),
)
# units for counting facts, plural (":f" feminine)
UNITS = {
    "days": ("days", "giorni", "días", "jours", "dias"),
    "months": ("months", "mesi", "meses", "mois", "meses"),
    "hours": ("hours", "ore:f", "horas:f", "heures:f", "horas:f"),
    "minutes": ("minutes", "minuti", "minutos", "minutes:f", "minutos"),
    "seconds": ("seconds", "secondi", "segundos", "secondes:f", "segundos"),
    "sides": ("sides", "lati", "lados", "côtés", "lados"),
    "fingers": ("fingers", "dita:f", "dedos", "doigts", "dedos"),
    "years": ("years", "anni", "años", "ans", "anos"),
    "colours": ("colours", "colori", "colores", "couleurs:f", "cores:f"),
    "players": ("players", "giocatori", "jugadores", "joueurs", "jogadores"),
}
# thing, how many, unit, topic, the thing per language
COUNT_FACTS = (
    ("week", 7, "days", "calendar", ("a week", "una settimana", "una semana", "une semaine", "uma semana")),
    ("year", 12, "months", "calendar", ("a year", "un anno", "un año", "une année", "um ano")),
    ("day", 24, "hours", "calendar", ("a day", "un giorno", "un día", "un jour", "um dia")),
    ("hour", 60, "minutes", "calendar", ("an hour", "un'ora", "una hora", "une heure", "uma hora")),
    ("minute", 60, "seconds", "calendar", ("a minute", "un minuto", "un minuto", "une minute", "um minuto")),
    ("decade", 10, "years", "calendar", ("a decade", "un decennio", "una década", "une décennie", "uma década")),
    ("century", 100, "years", "calendar", ("a century", "un secolo", "un siglo", "un siècle", "um século")),
    ("triangle", 3, "sides", "nature", ("a triangle", "un triangolo", "un triángulo", "un triangle", "um triângulo")),
    ("square", 4, "sides", "nature", ("a square", "un quadrato", "un cuadrado", "un carré", "um quadrado")),
    ("hand", 5, "fingers", "nature", ("a hand", "una mano", "una mano", "une main", "uma mão")),
    ("rainbow", 7, "colours", "nature", ("a rainbow", "un arcobaleno", "un arcoíris", "un arc-en-ciel", "um arco-íris")),
    ("football_team", 11, "players", "nature", ("a football team", "una squadra di calcio", "un equipo de fútbol", "une équipe de football", "um time de futebol")),
)
# fixed everyday statements (training text only): topic, sentence per language
STATEMENTS = (
    ("nature", ("The sun rises in the east and sets in the west.", "Il sole sorge a est e tramonta a ovest.", "El sol sale por el este y se pone por el oeste.", "Le soleil se lève à l'est et se couche à l'ouest.", "O sol nasce no leste e se põe no oeste.")),
    ("nature", ("Water boils at one hundred degrees Celsius.", "L'acqua bolle a cento gradi Celsius.", "El agua hierve a cien grados Celsius.", "L'eau bout à cent degrés Celsius.", "A água ferve a cem graus Celsius.")),
    ("nature", ("Water freezes at zero degrees Celsius.", "L'acqua gela a zero gradi Celsius.", "El agua se congela a cero grados Celsius.", "L'eau gèle à zéro degré Celsius.", "A água congela a zero grau Celsius.")),
    ("nature", ("The Earth goes around the Sun once a year.", "La Terra gira intorno al Sole una volta all'anno.", "La Tierra gira alrededor del Sol una vez al año.", "La Terre tourne autour du Soleil une fois par an.", "A Terra gira em torno do Sol uma vez por ano.")),
    ("nature", ("The Moon goes around the Earth.", "La Luna gira intorno alla Terra.", "La Luna gira alrededor de la Tierra.", "La Lune tourne autour de la Terre.", "A Lua gira em torno da Terra.")),
    ("nature", ("Ice is frozen water.", "Il ghiaccio è acqua congelata.", "El hielo es agua congelada.", "La glace est de l'eau gelée.", "O gelo é água congelada.")),
    ("nature", ("Bees make honey.", "Le api producono il miele.", "Las abejas producen miel.", "Les abeilles fabriquent du miel.", "As abelhas produzem mel.")),
    ("nature", ("Cows give milk.", "Le mucche danno il latte.", "Las vacas dan leche.", "Les vaches donnent du lait.", "As vacas dão leite.")),
    ("nature", ("Fish live in water and breathe with gills.", "I pesci vivono nell'acqua e respirano con le branchie.", "Los peces viven en el agua y respiran con branquias.", "Les poissons vivent dans l'eau et respirent avec des branchies.", "Os peixes vivem na água e respiram por brânquias.")),
    ("nature", ("Plants need water and light to grow.", "Le piante hanno bisogno di acqua e di luce per crescere.", "Las plantas necesitan agua y luz para crecer.", "Les plantes ont besoin d'eau et de lumière pour pousser.", "As plantas precisam de água e de luz para crescer.")),
    ("nature", ("Birds have feathers and most of them can fly.", "Gli uccelli hanno le piume e quasi tutti sanno volare.", "Las aves tienen plumas y casi todas pueden volar.", "Les oiseaux ont des plumes et la plupart savent voler.", "As aves têm penas e a maioria consegue voar.")),
    ("nature", ("Bread is made from flour, water and yeast.", "Il pane si fa con farina, acqua e lievito.", "El pan se hace con harina, agua y levadura.", "Le pain se fait avec de la farine, de l'eau et de la levure.", "O pão é feito com farinha, água e fermento.")),
    ("nature", ("The heart pumps blood through the body.", "Il cuore pompa il sangue in tutto il corpo.", "El corazón bombea la sangre por todo el cuerpo.", "Le cœur pompe le sang dans tout le corps.", "O coração bombeia o sangue por todo o corpo.")),
    ("nature", ("We see with our eyes and hear with our ears.", "Vediamo con gli occhi e sentiamo con le orecchie.", "Vemos con los ojos y oímos con los oídos.", "Nous voyons avec les yeux et nous entendons avec les oreilles.", "Vemos com os olhos e ouvimos com os ouvidos.")),
    ("nature", ("People usually sleep at night and work during the day.", "Di solito le persone dormono di notte e lavorano di giorno.", "Normalmente la gente duerme de noche y trabaja de día.", "En général, les gens dorment la nuit et travaillent le jour.", "Normalmente as pessoas dormem à noite e trabalham durante o dia.")),
    ("calendar", ("Saturday and Sunday make up the weekend.", "Il sabato e la domenica formano il fine settimana.", "El sábado y el domingo forman el fin de semana.", "Le samedi et le dimanche forment le week-end.", "O sábado e o domingo formam o fim de semana.")),
    ("calendar", ("A year has four seasons: spring, summer, autumn and winter.", "L'anno ha quattro stagioni: primavera, estate, autunno e inverno.", "El año tiene cuatro estaciones: primavera, verano, otoño e invierno.", "L'année compte quatre saisons : le printemps, l'été, l'automne et l'hiver.", "O ano tem quatro estações: primavera, verão, outono e inverno.")),
)

# --- document furniture -----------------------------------------------------------------------
TOPICS = ("country", "numbers", "calendar", "nature")
# finepdfs-like documents: "<lesson> <n>: <title>"
LESSON = ("Lesson", "Lezione", "Lección", "Leçon", "Lição")
TITLES = {
    "country": ("Countries {of_continent}", "Paesi {of_continent}", "Países {of_continent}", "Pays {of_continent}", "Países {of_continent}"),
    "numbers": ("Numbers and arithmetic", "Numeri e aritmetica", "Números y aritmética", "Nombres et arithmétique", "Números e aritmética"),
    "calendar": ("Days, months and time", "Giorni, mesi e tempo", "Días, meses y tiempo", "Jours, mois et temps", "Dias, meses e tempo"),
    "nature": ("Animals, colours and everyday facts", "Animali, colori e fatti quotidiani", "Animales, colores y datos cotidianos", "Animaux, couleurs et faits du quotidien", "Animais, cores e fatos do dia a dia"),
}
# quiz pages and the MMLU/ARC-style tasks (configs/lm_eval/{mmlu,arc}_<lang>.yaml) share this layout:
# "<question label>: <question>\n<answer label>: <answer>"
QA_LABELS = {"eng": ("Question", "Answer"), "ita": ("Domanda", "Risposta"), "spa": ("Pregunta", "Respuesta"),
             "fra": ("Question", "Réponse"), "por": ("Pergunta", "Resposta")}
QUIZ_TITLES = ("Quiz", "Quiz", "Cuestionario", "Quiz", "Questionário")

SYSTEM_PROMPTS = (
    ("You are a helpful assistant.", "You are a helpful assistant. Answer briefly."),
    ("Sei un assistente utile.", "Sei un assistente utile. Rispondi in modo breve."),
    ("Eres un asistente útil.", "Eres un asistente útil. Responde de forma breve."),
    ("Tu es un assistant utile.", "Tu es un assistant utile. Réponds brièvement."),
    ("Você é um assistente útil.", "Você é um assistente útil. Responda de forma breve."),
)

# --- templates --------------------------------------------------------------------------------
# type -> {"answer": slot, "topic": topic, lang: {"train", "question", "sft"}}
TEMPLATES = {
    "capital": {"answer": "capital", "topic": "country",
        "eng": {"train": ("The capital of {country} is {capital}.", "{capital} is the capital of {country}.", "{country} has {capital} as its capital.", "Many people visit {capital}, the capital of {country}."),
                "question": "Which city is the capital of {country}?", "sft": "What is the capital of {country}?"},
        "ita": {"train": ("La capitale {of_country} è {capital}.", "{capital} è la capitale {of_country}.", "{the_country} [ha|hanno] come capitale {capital}.", "Molte persone visitano {capital}, la capitale {of_country}."),
                "question": "Quale città è la capitale {of_country}?", "sft": "Qual è la capitale {of_country}?"},
        "spa": {"train": ("La capital {of_country} es {capital}.", "{capital} es la capital {of_country}.", "{the_country} [tiene|tienen] su capital en {capital}.", "Muchas personas visitan {capital}, la capital {of_country}."),
                "question": "¿Qué ciudad es la capital {of_country}?", "sft": "¿Cuál es la capital {of_country}?"},
        "fra": {"train": ("La capitale {of_country} est {capital}.", "{capital} est la capitale {of_country}.", "{the_country} [a|ont] pour capitale {capital}.", "Beaucoup de gens visitent {capital}, la capitale {of_country}."),
                "question": "Quelle ville est la capitale {of_country} ?", "sft": "Quelle est la capitale {of_country} ?"},
        "por": {"train": ("A capital {of_country} é {capital}.", "{capital} é a capital {of_country}.", "{the_country} [tem|têm] como capital {capital}.", "Muitas pessoas visitam {capital}, a capital {of_country}."),
                "question": "Que cidade é a capital {of_country}?", "sft": "Qual é a capital {of_country}?"},
    },
    "continent": {"answer": "continent", "topic": "country",
        "eng": {"train": ("{country} is in {continent}.", "{country} is a country {in_continent}.", "{country} lies {in_continent}.", "{country} is one of the countries {of_continent}."),
                "question": "On which continent is {country} located?", "sft": "Which continent is {country} in?"},
        "ita": {"train": ("{the_country} [si trova|si trovano] {in_continent}.", "{the_country} [è un paese|sono un paese] {of_continent}.", "{in_continent} [si trova|si trovano] anche {the_country}.", "Tra i paesi {of_continent} [c'è|ci sono] anche {the_country}."),
                "question": "In quale continente [si trova|si trovano] {the_country}?", "sft": "Dove [si trova|si trovano] {the_country}?"},
        "spa": {"train": ("{the_country} [está|están] {in_continent}.", "{the_country} [es un país|son un país] {of_continent}.", "{in_continent} [se encuentra|se encuentran] también {the_country}.", "Entre los países {of_continent} [está|están] también {the_country}."),
                "question": "¿En qué continente [está|están] {the_country}?", "sft": "¿Dónde [está|están] {the_country}?"},
        "fra": {"train": ("{the_country} [se trouve|se trouvent] {in_continent}.", "{the_country} [est un pays|sont un pays] {of_continent}.", "{in_continent}, on trouve aussi {the_country}.", "Parmi les pays {of_continent}, il y a {the_country}."),
                "question": "Sur quel continent [se trouve|se trouvent] {the_country} ?", "sft": "Où [se trouve|se trouvent] {the_country} ?"},
        "por": {"train": ("{the_country} [fica|ficam] {in_continent}.", "{the_country} [é um país|são um país] {of_continent}.", "{in_continent} [fica|ficam] também {the_country}.", "Entre os países {of_continent} [está|estão] {the_country}."),
                "question": "Em que continente [fica|ficam] {the_country}?", "sft": "Onde [fica|ficam] {the_country}?"},
    },
    "language": {"answer": "language", "topic": "country",
        "eng": {"train": ("{in_country}, people speak {language}.", "The main language of {country} is {language}.", "{language} is the main language spoken {in_country}.", "Most people {in_country} speak {language}."),
                "question": "Which language do most people speak {in_country}?", "sft": "What language is spoken {in_country}?"},
        "ita": {"train": ("{in_country} si parla {language}.", "La lingua principale {of_country} è {the_language}.", "{the_language} è la lingua principale {of_country}.", "La maggior parte delle persone {in_country} parla {language}."),
                "question": "Quale lingua parla la maggior parte della gente {in_country}?", "sft": "Che lingua si parla {in_country}?"},
        "spa": {"train": ("{in_country} se habla {language}.", "La lengua principal {of_country} es {the_language}.", "{the_language} es la lengua principal {of_country}.", "La mayoría de la gente {in_country} habla {language}."),
                "question": "¿Qué idioma habla la mayoría de los habitantes {of_country}?", "sft": "¿Qué lengua se habla {in_country}?"},
        "fra": {"train": ("{in_country}, on parle {language}.", "La langue principale {of_country} est {the_language}.", "{the_language} est la langue principale {of_country}.", "La plupart des habitants {of_country} parlent {language}."),
                "question": "Quelle langue parle la majorité des gens {in_country} ?", "sft": "Quelle langue parle-t-on {in_country} ?"},
        "por": {"train": ("{in_country} fala-se {language}.", "A língua principal {of_country} é {the_language}.", "{the_language} é a língua principal {of_country}.", "A maioria das pessoas {in_country} fala {language}."),
                "question": "Que língua fala a maior parte da população {of_country}?", "sft": "Que língua se fala {in_country}?"},
    },
    "currency": {"answer": "currency", "topic": "country",
        "eng": {"train": ("The currency of {country} is {currency}.", "{in_country}, people pay with {currency}.", "{currency} is the currency used {in_country}.", "{country} uses {currency} as its currency."),
                "question": "What money do people use {in_country}?", "sft": "What is the currency of {country}?"},
        "ita": {"train": ("La valuta {of_country} è {currency}.", "{in_country} si paga con {currency}.", "{currency} è la moneta usata {in_country}.", "{the_country} [usa|usano] {currency} come valuta."),
                "question": "Con quale moneta si fanno gli acquisti {in_country}?", "sft": "Qual è la valuta {of_country}?"},
        "spa": {"train": ("La moneda {of_country} es {currency}.", "{in_country} se paga con {currency}.", "{currency} es la moneda que se usa {in_country}.", "{the_country} [usa|usan] {currency} como moneda."),
                "question": "¿Con qué moneda se hacen las compras {in_country}?", "sft": "¿Cuál es la moneda {of_country}?"},
        "fra": {"train": ("La monnaie {of_country} est {currency}.", "{in_country}, on paie avec {currency}.", "{currency} est la monnaie utilisée {in_country}.", "{the_country} [utilise|utilisent] {currency} comme monnaie."),
                "question": "Avec quelle monnaie fait-on ses achats {in_country} ?", "sft": "Quelle est la monnaie {of_country} ?"},
        "por": {"train": ("A moeda {of_country} é {currency}.", "{in_country} paga-se com {currency}.", "{currency} é a moeda usada {in_country}.", "{the_country} [usa|usam] {currency} como moeda."),
                "question": "Com que moeda se fazem as compras {in_country}?", "sft": "Qual é a moeda {of_country}?"},
    },
    "river": {"answer": "river", "topic": "country",
        "eng": {"train": ("{river} flows through {country}.", "A major river of {country} is {river}.", "{river} is one of the great rivers of {country}.", "One of the most important rivers {in_country} is {river}."),
                "question": "Which river flows through {country}?", "sft": "Can you name a river {in_country}?"},
        "ita": {"train": ("{river} scorre {in_country}.", "Un grande fiume {of_country} è {river}.", "{river} è uno dei fiumi più importanti {of_country}.", "Tra i fiumi {of_country} c'è {river}."),
                "question": "Quale fiume scorre {in_country}?", "sft": "Sai dirmi un fiume {of_country}?"},
        "spa": {"train": ("{river} pasa por {the_country}.", "Un gran río {of_country} es {river}.", "{river} es uno de los ríos más importantes {of_country}.", "Entre los ríos {of_country} está {river}."),
                "question": "¿Qué río pasa por {the_country}?", "sft": "¿Me puedes decir un río {of_country}?"},
        "fra": {"train": ("{river} coule {in_country}.", "Un grand fleuve {of_country} est {river}.", "{river} est l'un des fleuves les plus importants {of_country}.", "Parmi les fleuves {of_country}, il y a {river}."),
                "question": "Quel fleuve coule {in_country} ?", "sft": "Peux-tu me citer un fleuve {of_country} ?"},
        "por": {"train": ("{river} atravessa {the_country}.", "Um grande rio {of_country} é {river}.", "{river} é um dos rios mais importantes {of_country}.", "Entre os rios {of_country} está {river}."),
                "question": "Que rio atravessa {the_country}?", "sft": "Pode me dizer um rio {of_country}?"},
    },
    "mountain": {"answer": "mountain", "topic": "country",
        "eng": {"train": ("{mountain} is a famous mountain {in_country}.", "One of the best-known mountains of {country} is {mountain}.", "{mountain} rises {in_country}.", "Climbers from all over the world visit {mountain} {in_country}."),
                "question": "Which famous mountain is found {in_country}?", "sft": "What is a famous mountain {in_country}?"},
        "ita": {"train": ("{mountain} è una montagna famosa {in_country}.", "Una delle montagne più conosciute {of_country} è {mountain}.", "{mountain} si trova {in_country}.", "Alpinisti da tutto il mondo visitano {mountain}, {in_country}."),
                "question": "Quale montagna famosa si trova {in_country}?", "sft": "Mi dici una montagna famosa {of_country}?"},
        "spa": {"train": ("{mountain} es una montaña famosa {of_country}.", "Una de las montañas más conocidas {of_country} es {mountain}.", "{mountain} se encuentra {in_country}.", "Alpinistas de todo el mundo visitan {mountain}, {in_country}."),
                "question": "¿Qué montaña famosa se encuentra {in_country}?", "sft": "¿Me dices una montaña famosa {of_country}?"},
        "fra": {"train": ("{mountain} est une montagne célèbre {in_country}.", "L'une des montagnes les plus connues {of_country} est {mountain}.", "{mountain} se trouve {in_country}.", "Des alpinistes du monde entier visitent {mountain}, {in_country}."),
                "question": "Quelle montagne célèbre se trouve {in_country} ?", "sft": "Peux-tu me citer une montagne célèbre {of_country} ?"},
        "por": {"train": ("{mountain} é uma montanha famosa {of_country}.", "Uma das montanhas mais conhecidas {of_country} é {mountain}.", "{mountain} fica {in_country}.", "Alpinistas do mundo inteiro visitam {mountain}, {in_country}."),
                "question": "Que montanha famosa fica {in_country}?", "sft": "Pode me dizer uma montanha famosa {of_country}?"},
    },
    "number": {"answer": "word", "topic": "numbers",
        "eng": {"train": ("The number {digits} is written {word}.", "{digits} in words is {word}.", "We write {word} for the number {digits}.", "In words, {digits} becomes {word}."),
                "question": "How do you write the number {digits} in words?", "sft": "How is {digits} written in words?"},
        "ita": {"train": ("Il numero {digits} si scrive {word}.", "{digits} in lettere è {word}.", "Scriviamo {word} per indicare il numero {digits}.", "In lettere, {digits} diventa {word}."),
                "question": "Come si scrive in lettere il numero {digits}?", "sft": "Come si scrive {digits} in lettere?"},
        "spa": {"train": ("El número {digits} se escribe {word}.", "{digits} en letras es {word}.", "Escribimos {word} para indicar el número {digits}.", "En letras, {digits} se convierte en {word}."),
                "question": "¿Cómo se escribe con letras el número {digits}?", "sft": "¿Cómo se escribe {digits} en letras?"},
        "fra": {"train": ("Le nombre {digits} s'écrit {word}.", "{digits} en lettres, c'est {word}.", "On écrit {word} pour désigner le nombre {digits}.", "En toutes lettres, {digits} devient {word}."),
                "question": "Comment écrit-on en lettres le nombre {digits} ?", "sft": "Comment s'écrit {digits} en lettres ?"},
        "por": {"train": ("O número {digits} se escreve {word}.", "{digits} por extenso é {word}.", "Escrevemos {word} para indicar o número {digits}.", "Por extenso, {digits} vira {word}."),
                "question": "Como se escreve por extenso o número {digits}?", "sft": "Como se escreve {digits} por extenso?"},
    },
    "addition": {"answer": "result", "topic": "numbers",
        "eng": {"train": ("{a} plus {b} is {result}.", "{a} plus {b} equals {result}.", "If you add {b} to {a}, you get {result}.", "The sum of {a} and {b} is {result}."),
                "question": "What is {a} plus {b}?", "sft": "How much is {a} plus {b}?"},
        "ita": {"train": ("{a} più {b} fa {result}.", "{a} più {b} è uguale a {result}.", "Se aggiungi {b} a {a}, ottieni {result}.", "La somma di {a} e {b} è {result}."),
                "question": "Quanto fa {a} più {b}?", "sft": "Quanto è {a} più {b}?"},
        "spa": {"train": ("{a} más {b} son {result}.", "{a} más {b} es igual a {result}.", "Si sumas {b} a {a}, obtienes {result}.", "La suma de {a} y {b} es {result}."),
                "question": "¿Cuánto es {a} más {b}?", "sft": "¿Cuánto da {a} más {b}?"},
        "fra": {"train": ("{a} plus {b} font {result}.", "{a} plus {b} égale {result}.", "Si on ajoute {b} à {a}, on obtient {result}.", "La somme de {a} et {b} est {result}."),
                "question": "Combien font {a} plus {b} ?", "sft": "Combien fait {a} plus {b} ?"},
        "por": {"train": ("{a} mais {b} são {result}.", "{a} mais {b} é igual a {result}.", "Se você somar {b} a {a}, obtém {result}.", "A soma de {a} e {b} é {result}."),
                "question": "Quanto é {a} mais {b}?", "sft": "Quanto dá {a} mais {b}?"},
    },
    "subtraction": {"answer": "result", "topic": "numbers",
        "eng": {"train": ("{a} minus {b} is {result}.", "{a} minus {b} equals {result}.", "If you take {b} away from {a}, you get {result}.", "The difference between {a} and {b} is {result}."),
                "question": "What is {a} minus {b}?", "sft": "How much is {a} minus {b}?"},
        "ita": {"train": ("{a} meno {b} fa {result}.", "{a} meno {b} è uguale a {result}.", "Se togli {b} da {a}, ottieni {result}.", "La differenza tra {a} e {b} è {result}."),
                "question": "Quanto fa {a} meno {b}?", "sft": "Quanto è {a} meno {b}?"},
        "spa": {"train": ("{a} menos {b} son {result}.", "{a} menos {b} es igual a {result}.", "Si quitas {b} a {a}, obtienes {result}.", "La diferencia entre {a} y {b} es {result}."),
                "question": "¿Cuánto es {a} menos {b}?", "sft": "¿Cuánto da {a} menos {b}?"},
        "fra": {"train": ("{a} moins {b} font {result}.", "{a} moins {b} égale {result}.", "Si on enlève {b} à {a}, on obtient {result}.", "La différence entre {a} et {b} est {result}."),
                "question": "Combien font {a} moins {b} ?", "sft": "Combien fait {a} moins {b} ?"},
        "por": {"train": ("{a} menos {b} são {result}.", "{a} menos {b} é igual a {result}.", "Se você tirar {b} de {a}, obtém {result}.", "A diferença entre {a} e {b} é {result}."),
                "question": "Quanto é {a} menos {b}?", "sft": "Quanto dá {a} menos {b}?"},
    },
    "weekday": {"answer": "next", "topic": "calendar",
        "eng": {"train": ("After {day} comes {next}.", "The day after {day} is {next}.", "{next} comes right after {day}.", "{day} is followed by {next}."),
                "question": "Which day of the week comes after {day}?", "sft": "What day comes after {day}?"},
        "ita": {"train": ("Dopo {day} viene {next}.", "Il giorno dopo {day} è {next}.", "{next} viene subito dopo {day}.", "A {day} segue {next}."),
                "question": "Quale giorno della settimana viene dopo {day}?", "sft": "Che giorno viene dopo {day}?"},
        "spa": {"train": ("Después del {day} viene el {next}.", "El día después del {day} es el {next}.", "El {next} viene justo después del {day}.", "Al {day} le sigue el {next}."),
                "question": "¿Qué día de la semana viene después del {day}?", "sft": "¿Qué día va después del {day}?"},
        "fra": {"train": ("Après {day} vient {next}.", "Le jour après {day}, c'est {next}.", "{next} vient juste après {day}.", "{day} est suivi de {next}."),
                "question": "Quel jour de la semaine vient après {day} ?", "sft": "Quel jour vient après {day} ?"},
        "por": {"train": ("Depois de {day} vem {next}.", "O dia depois de {day} é {next}.", "{next} vem logo depois de {day}.", "Logo após {day} chega {next}."),
                "question": "Que dia da semana vem depois de {day}?", "sft": "Qual dia vem depois de {day}?"},
    },
    "month_next": {"answer": "next", "topic": "calendar",
        "eng": {"train": ("After {month} comes {next}.", "The month after {month} is {next}.", "{next} comes right after {month}.", "{month} is followed by {next}."),
                "question": "Which month comes after {month}?", "sft": "What month follows {month}?"},
        "ita": {"train": ("Dopo {month} viene {next}.", "Il mese dopo {month} è {next}.", "{next} viene subito dopo {month}.", "{month} è seguito da {next}."),
                "question": "Quale mese viene dopo {month}?", "sft": "Che mese segue {month}?"},
        "spa": {"train": ("Después de {month} viene {next}.", "El mes después de {month} es {next}.", "{next} viene justo después de {month}.", "A {month} le sigue {next}."),
                "question": "¿Qué mes viene después de {month}?", "sft": "¿Qué mes sigue a {month}?"},
        "fra": {"train": ("Après {month} vient {next}.", "Le mois après {month}, c'est {next}.", "{next} vient juste après {month}.", "{month} est suivi de {next}."),
                "question": "Quel mois vient après {month} ?", "sft": "Quel mois suit {month} ?"},
        "por": {"train": ("Depois de {month} vem {next}.", "O mês depois de {month} é {next}.", "{next} vem logo depois de {month}.", "{month} é seguido por {next}."),
                "question": "Que mês vem depois de {month}?", "sft": "Qual mês segue {month}?"},
    },
    "month_order": {"answer": "month", "topic": "calendar",
        "eng": {"train": ("{month} is the {ordinal} month of the year.", "The {ordinal} month of the year is {month}.", "In the calendar, {month} is the {ordinal} month.", "Of the twelve months, {month} is the {ordinal}."),
                "question": "Which is the {ordinal} month of the year?", "sft": "What is the name of the {ordinal} month of the year?"},
        "ita": {"train": ("{month} è {the_ordinal} mese dell'anno.", "{the_ordinal} mese dell'anno è {month}.", "Nel calendario, {month} è {the_ordinal} mese.", "Dei dodici mesi, {month} è {the_ordinal}."),
                "question": "Qual è {the_ordinal} mese dell'anno?", "sft": "Come si chiama {the_ordinal} mese dell'anno?"},
        "spa": {"train": ("{month} es el {ordinal} mes del año.", "El {ordinal} mes del año es {month}.", "En el calendario, {month} es el {ordinal} mes.", "Contando desde enero, {month} ocupa el {ordinal} lugar."),
                "question": "¿Cuál es el {ordinal} mes del año?", "sft": "¿Cómo se llama el {ordinal} mes del año?"},
        "fra": {"train": ("{month} est le {ordinal} mois de l'année.", "Le {ordinal} mois de l'année est {month}.", "Dans le calendrier, {month} est le {ordinal} mois.", "En comptant depuis janvier, {month} occupe le {ordinal} rang."),
                "question": "Quel est le {ordinal} mois de l'année ?", "sft": "Comment s'appelle le {ordinal} mois de l'année ?"},
        "por": {"train": ("{month} é o {ordinal} mês do ano.", "O {ordinal} mês do ano é {month}.", "No calendário, {month} é o {ordinal} mês.", "Contando a partir de janeiro, {month} ocupa o {ordinal} lugar."),
                "question": "Qual é o {ordinal} mês do ano?", "sft": "Como se chama o {ordinal} mês do ano?"},
    },
    "colour": {"answer": "colour", "topic": "nature",
        "eng": {"train": ("{obj} is {colour}.", "Everyone knows that {obj} is {colour}.", "The colour of {obj} is {colour}.", "Children learn early that {obj} is {colour}."),
                "question": "What colour is {obj}?", "sft": "Which colour is {obj}?"},
        "ita": {"train": ("{obj} è {colour}.", "Tutti sanno che {obj} è {colour}.", "Di solito {obj} è {colour}.", "I bambini imparano presto che {obj} è {colour}."),
                "question": "Di che colore è {obj}?", "sft": "Che colore ha {obj}?"},
        "spa": {"train": ("{obj} es {colour}.", "Todo el mundo sabe que {obj} es {colour}.", "Normalmente {obj} es {colour}.", "Los niños aprenden pronto que {obj} es {colour}."),
                "question": "¿De qué color es {obj}?", "sft": "¿Qué color tiene {obj}?"},
        "fra": {"train": ("{obj} est {colour}.", "Tout le monde sait que {obj} est {colour}.", "D'habitude, {obj} est {colour}.", "Les enfants apprennent tôt que {obj} est {colour}."),
                "question": "De quelle couleur est {obj} ?", "sft": "{obj} est de quelle couleur ?"},
        "por": {"train": ("{obj} é {colour}.", "Todo mundo sabe que {obj} é {colour}.", "Normalmente {obj} é {colour}.", "As crianças aprendem cedo que {obj} é {colour}."),
                "question": "De que cor é {obj}?", "sft": "Que cor tem {obj}?"},
    },
    "animal_legs": {"answer": "legs", "topic": "nature",
        "eng": {"train": ("{animal} has {legs} legs.", "{animal} walks on {legs} legs.", "Everyone knows that {animal} has {legs} legs.", "If you count the legs of {animal}, you find {legs}."),
                "question": "How many legs does {animal} have?", "sft": "How many legs has {animal} got?"},
        "ita": {"train": ("{animal} ha {legs} zampe.", "{animal} cammina su {legs} zampe.", "Tutti sanno che {animal} ha {legs} zampe.", "Contando le sue zampe, si scopre che {animal} ne ha {legs}."),
                "question": "Quante zampe ha {animal}?", "sft": "Quante zampe possiede {animal}?"},
        "spa": {"train": ("{animal} tiene {legs} patas.", "{animal} camina sobre {legs} patas.", "Todo el mundo sabe que {animal} tiene {legs} patas.", "Si se cuentan sus patas, se descubre que {animal} tiene {legs}."),
                "question": "¿Cuántas patas tiene {animal}?", "sft": "¿Cuántas patas posee {animal}?"},
        "fra": {"train": ("{animal} a {legs} pattes.", "{animal} marche sur {legs} pattes.", "Tout le monde sait que {animal} a {legs} pattes.", "Si l'on compte ses pattes, on découvre que {animal} en a {legs}."),
                "question": "Combien de pattes a {animal} ?", "sft": "Combien de pattes possède {animal} ?"},
        "por": {"train": ("{animal} tem {legs} patas.", "{animal} anda sobre {legs} patas.", "Todo mundo sabe que {animal} tem {legs} patas.", "Contando as suas patas, descobre-se que {animal} tem {legs}."),
                "question": "Quantas patas tem {animal}?", "sft": "Quantas patas possui {animal}?"},
    },
    "animal_sound": {"answer": "sound", "topic": "nature",
        "eng": {"train": ("{animal} {sound}.", "Everyone knows that {animal} {sound}.", "Children learn early that {animal} {sound}.", "When it calls out, {animal} {sound}."),
                "question": "What does {animal} do when it makes its typical sound?", "sft": "What sound does {animal} make?"},
        "ita": {"train": ("{animal} {sound}.", "Tutti sanno che {animal} {sound}.", "I bambini imparano presto che {animal} {sound}.", "Quando chiama, {animal} {sound}."),
                "question": "Che cosa fa {animal} quando emette il suo verso tipico?", "sft": "Che verso fa {animal}?"},
        "spa": {"train": ("{animal} {sound}.", "Todo el mundo sabe que {animal} {sound}.", "Los niños aprenden pronto que {animal} {sound}.", "Cuando llama, {animal} {sound}."),
                "question": "¿Qué hace {animal} cuando emite su sonido típico?", "sft": "¿Qué sonido hace {animal}?"},
        "fra": {"train": ("{animal} {sound}.", "Tout le monde sait que {animal} {sound}.", "Les enfants apprennent tôt que {animal} {sound}.", "Pour appeler, {animal} {sound}."),
                "question": "Que fait {animal} pour pousser son cri typique ?", "sft": "Quel cri pousse {animal} ?"},
        "por": {"train": ("{animal} {sound}.", "Todo mundo sabe que {animal} {sound}.", "As crianças aprendem cedo que {animal} {sound}.", "Quando chama, {animal} {sound}."),
                "question": "O que faz {animal} quando emite o seu som típico?", "sft": "Que som faz {animal}?"},
    },
    "count": {"answer": "n", "topic": "nature",
        "eng": {"train": ("{subj} has {n} {unit}.", "There are {n} {unit} in {subj}.", "Everyone knows that {subj} has {n} {unit}.", "{subj} is made up of {n} {unit}."),
                "question": "How many {unit} are there in {subj}?", "sft": "How many {unit} does {subj} have?"},
        "ita": {"train": ("{subj} ha {n} {unit}.", "In {subj} ci sono {n} {unit}.", "Tutti sanno che {subj} ha {n} {unit}.", "{subj} si compone di {n} {unit}."),
                "question": "[Quanti|Quante] {unit} ha {subj}?", "sft": "[Quanti|Quante] {unit} ci sono in {subj}?"},
        "spa": {"train": ("{subj} tiene {n} {unit}.", "En {subj} hay {n} {unit}.", "Todo el mundo sabe que {subj} tiene {n} {unit}.", "{subj} se compone de {n} {unit}."),
                "question": "¿[Cuántos|Cuántas] {unit} tiene {subj}?", "sft": "¿[Cuántos|Cuántas] {unit} hay en {subj}?"},
        "fra": {"train": ("{subj} a {n} {unit}.", "Dans {subj}, il y a {n} {unit}.", "Tout le monde sait que {subj} a {n} {unit}.", "{subj} se compose de {n} {unit}."),
                "question": "Combien de {unit} y a-t-il dans {subj} ?", "sft": "Combien de {unit} compte {subj} ?"},
        "por": {"train": ("{subj} tem {n} {unit}.", "Em {subj} há {n} {unit}.", "Todo mundo sabe que {subj} tem {n} {unit}.", "{subj} se compõe de {n} {unit}."),
                "question": "[Quantos|Quantas] {unit} tem {subj}?", "sft": "[Quantos|Quantas] {unit} há em {subj}?"},
    },
}
# fixed sentences: training text only, never held out or asked about
TEMPLATES["statement"] = {"answer": None, "topic": "nature",
                          **{lang: {"train": ("{text}",), "question": None, "sft": None}
                             for lang in ALL_LANGUAGES}}

FACT_TYPES = tuple(TEMPLATES)
MC_TYPES = tuple(t for t in FACT_TYPES if t != "statement")  # types asked about in held-out items
NUMERIC_TYPES = ("number", "addition", "subtraction", "animal_legs", "count")


# --- helpers ----------------------------------------------------------------------------------
def check_language(language: str, allow_eng: bool = False) -> str:
    """Return ``language`` if it is a run language (or ``eng`` where allowed); raise otherwise."""
    valid = (("eng",) if allow_eng else ()) + LANGUAGES
    if language not in valid:
        note = "" if allow_eng else " (eng is the second language of every run, not a run language)"
        raise ZagreusError(
            f"unknown language {language!r}: valid choices are {', '.join(valid)}{note}")
    return language


def number_word(n: int, lang: str, feminine: bool = False) -> str:
    """``n`` (0-100) in words: ``42`` -> ``forty-two``, ``quarantadue``, ``cuarenta y dos``..."""
    if not 0 <= n <= 100:
        raise ValueError(f"number_word covers 0-100, not {n}")
    if n == 100:
        return _HUNDRED[lang]
    ones = _ONES[lang]
    if lang == "fra":
        return _fra_number(n)
    if n < len(ones):
        word = ones[n]
    else:
        tens, unit = divmod(n, 10)
        tens_word = _TENS[lang][tens - 2]
        if unit == 0:
            word = tens_word
        elif lang == "eng":
            word = f"{tens_word}-{ones[unit]}"
        elif lang == "ita":
            if unit in (1, 8):  # ventuno, ventotto
                tens_word = tens_word[:-1]
            word = tens_word + ("tré" if unit == 3 else ones[unit])
        else:  # spa "treinta y dos", por "vinte e dois"
            word = f"{tens_word} {'y' if lang == 'spa' else 'e'} {ones[unit]}"
    if feminine and lang == "por":
        word = re.sub(r"\bum$", "uma", re.sub(r"\bdois$", "duas", word))
    return word


def _fra_number(n: int) -> str:
    ones = _ONES["fra"]
    if n <= 16:
        return ones[n]
    if n < 20:
        return "dix-" + ones[n - 10]
    tens, unit = divmod(n, 10)
    if tens == 7:
        return "soixante et onze" if unit == 1 else "soixante-" + _fra_number(n - 60)
    if tens == 8:
        return "quatre-vingts" if unit == 0 else "quatre-vingt-" + ones[unit]
    if tens == 9:
        return "quatre-vingt-" + _fra_number(n - 80)
    tens_word = _TENS["fra"][tens - 2]
    if unit == 0:
        return tens_word
    return f"{tens_word} et un" if unit == 1 else f"{tens_word}-{ones[unit]}"


_VOWELS = "aeiouàáâãäèéêëìíîïòóôõöùúûüœ"


def _italian_article(name: str, code: str) -> str:
    low = name.lower()
    vowel = low[0] in _VOWELS
    impure = bool(re.match(r"s[^aeiou]|z|gn|ps|x|y", low))
    if code == "f":
        return f"l'{name}" if vowel else f"la {name}"
    if code == "m":
        return f"l'{name}" if vowel else f"{'lo' if impure else 'il'} {name}"
    if code == "mp":
        return f"{'gli' if vowel or impure else 'i'} {name}"
    if code == "fp":
        return f"le {name}"
    return name


_ITA_DI = {"il ": "del ", "lo ": "dello ", "la ": "della ", "l'": "dell'", "i ": "dei ", "gli ": "degli ", "le ": "delle "}
_ITA_IN = {"il ": "nel ", "lo ": "nello ", "la ": "nella ", "l'": "nell'", "i ": "nei ", "gli ": "negli ", "le ": "nelle "}


def _contract(with_article: str, table: dict[str, str]) -> str:
    for article, contracted in table.items():
        if with_article.startswith(article):
            return contracted + with_article[len(article):]
    raise AssertionError(with_article)


def _country_slots(raw: str, lang: str) -> dict:
    """``country``, ``the_country``, ``of_country``, ``in_country`` and the plural flag."""
    name, _, code = raw.partition(":")
    in_article = code.endswith("*")
    code = code.rstrip("*") or "0"
    plural = code in ("mp", "fp")
    if lang == "eng":
        return {"country": name, "the_country": name, "of_country": f"of {name}",
                "in_country": f"in {name}", "_alt": False}
    if lang == "ita":
        the = _italian_article(name, code)
        of = f"di {name}" if code == "0" else _contract(the, _ITA_DI)
        if code == "0":
            where = f"a {name}"
        elif plural or in_article:
            where = _contract(the, _ITA_IN)
        else:
            where = f"in {name}"
    elif lang == "spa":
        article = {"0": "", "m": "el ", "f": "la ", "mp": "los ", "fp": "las "}[code]
        the = article + name
        of = "del " + name if code == "m" else "de " + the
        where = "en " + the
    elif lang == "fra":
        vowel = name[0].lower() in _VOWELS
        if code in ("f", "m"):
            the = f"l'{name}" if vowel else f"{'la' if code == 'f' else 'le'} {name}"
            of = f"de l'{name}" if vowel else (f"de la {name}" if code == "f" else f"du {name}")
            where = f"en {name}" if code == "f" or vowel else f"au {name}"
        elif plural:
            the, of, where = f"les {name}", f"des {name}", f"aux {name}"
        else:
            the, of, where = name, (f"d'{name}" if vowel else f"de {name}"), f"à {name}"
    else:  # por
        article = {"0": "", "m": "o", "f": "a", "mp": "os", "fp": "as"}[code]
        the = f"{article} {name}".strip()
        of = f"d{article} {name}" if article else f"de {name}"
        where = f"n{article} {name}" if article else f"em {name}"
    return {"country": name, "the_country": the, "of_country": of, "in_country": where, "_alt": plural}


def _with_article_language(name: str, lang: str) -> str:
    if lang == "ita":
        return f"l'{name}" if name[0] == "h" else _italian_article(name, "m")
    if lang == "spa":
        return f"el {name}"
    if lang == "fra":
        return f"l'{name}" if name[0] in _VOWELS or name[0] == "h" else f"le {name}"
    if lang == "por":
        return f"o {name}"
    return name


def _with_article_ordinal(ordinal: str, lang: str) -> str:
    if lang == "ita":
        return f"l'{ordinal}" if ordinal[0] in _VOWELS else f"il {ordinal}"
    return {"eng": "the", "spa": "el", "fra": "le", "por": "o"}[lang] + " " + ordinal


def _gendered(raw: str) -> tuple[str, bool]:
    name, _, code = raw.partition(":")
    return name, code == "f"


# --- facts ------------------------------------------------------------------------------------
def _fact(fid: str, ftype: str, lang: str, slots: dict, alt: bool = False, group: str | None = None,
          value: int | None = None, pool: list[str] | None = None, topic: str | None = None) -> dict:
    return {"id": fid, "type": ftype, "lang": lang, "topic": topic or TEMPLATES[ftype]["topic"],
            "answer": TEMPLATES[ftype]["answer"], "slots": slots, "alt": alt, "group": group,
            "value": value, "pool": pool}


def _near_numbers(value: int, lang: str, feminine: bool = False) -> list[str]:
    """Plausible wrong numbers (words) around ``value``, nearest first."""
    near = [value + d for d in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 10, -10)]
    return [number_word(n, lang, feminine) for n in near if 0 <= n <= 100]


@lru_cache(maxsize=None)
def _facts(lang: str) -> tuple[dict, ...]:
    i = _IDX[lang]
    out: list[dict] = []
    for cid, continent, language, currency, names, capitals in COUNTRIES:
        base = _country_slots(names[i], lang)
        alt = base.pop("_alt")
        cont_name, cont_in, cont_of = CONTINENTS[continent][i]
        lang_name = LANGUAGE_NAMES[language][i]
        slots = dict(base, capital=capitals[i], continent=cont_name, in_continent=cont_in,
                     of_continent=cont_of, language=lang_name,
                     the_language=_with_article_language(lang_name, lang),
                     currency=CURRENCIES[currency][i])
        if cid in RIVERS:
            slots["river"] = RIVERS[cid][i]
        if cid in MOUNTAINS:
            slots["mountain"] = MOUNTAINS[cid][i]
        for ftype in ("capital", "continent", "language", "currency", "river", "mountain"):
            if ftype in ("river", "mountain") and ftype not in slots:
                continue
            out.append(_fact(f"{ftype}:{cid}", ftype, lang, slots, alt=alt, group=continent))
    for n in range(101):
        out.append(_fact(f"number:{n}", "number", lang, {"digits": str(n), "word": number_word(n, lang)},
                         value=n, pool=_near_numbers(n, lang)))
    for a in range(11):
        for b in range(11):
            out.append(_fact(f"addition:{a}+{b}", "addition", lang,
                             {"a": number_word(a, lang), "b": number_word(b, lang),
                              "result": number_word(a + b, lang)},
                             value=a + b, pool=_near_numbers(a + b, lang)))
    for a in range(21):
        for b in range(min(a, 10) + 1):
            out.append(_fact(f"subtraction:{a}-{b}", "subtraction", lang,
                             {"a": number_word(a, lang), "b": number_word(b, lang),
                              "result": number_word(a - b, lang)},
                             value=a - b, pool=_near_numbers(a - b, lang)))
    days, months, ordinals = DAYS[i], MONTHS[i], ORDINALS[i]
    for k, day in enumerate(days):
        out.append(_fact(f"weekday:{DAYS[0][k].lower()}", "weekday", lang,
                         {"day": day, "next": days[(k + 1) % 7]}))
    for k, month in enumerate(months):
        key = MONTHS[0][k].lower()
        out.append(_fact(f"month_next:{key}", "month_next", lang,
                         {"month": month, "next": months[(k + 1) % 12]}))
        out.append(_fact(f"month_order:{key}", "month_order", lang,
                         {"month": month, "ordinal": ordinals[k],
                          "the_ordinal": _with_article_ordinal(ordinals[k], lang)}))
    for key, colour, things in COLOUR_FACTS:
        obj, feminine = _gendered(things[i])
        forms = {c: (v[0] if lang == "eng" else v[i][int(feminine)]) for c, v in COLOURS.items()}
        out.append(_fact(f"colour:{key}", "colour", lang, {"obj": obj, "colour": forms[colour]},
                         pool=[w for c, w in forms.items() if c != colour]))
    for key, legs, animal, sound in ANIMALS:
        if legs is not None:
            feminine = lang == "por"  # "patas" is feminine: duas patas
            out.append(_fact(f"animal_legs:{key}", "animal_legs", lang,
                             {"animal": animal[i], "legs": number_word(legs, lang, feminine)},
                             value=legs, pool=[number_word(n, lang, feminine) for n in (4, 2, 6, 8, 3, 5, 10) if n != legs]))
        if sound is not None:
            out.append(_fact(f"animal_sound:{key}", "animal_sound", lang,
                             {"animal": animal[i], "sound": sound[i]}))
    for key, n, unit, topic, things in COUNT_FACTS:
        unit_name, feminine = _gendered(UNITS[unit][i])
        out.append(_fact(f"count:{key}", "count", lang,
                         {"subj": things[i], "n": number_word(n, lang), "unit": unit_name},
                         alt=feminine, value=n, pool=_near_numbers(n, lang), topic=topic))
    for k, (topic, sentences) in enumerate(STATEMENTS):
        out.append(_fact(f"statement:{k}", "statement", lang, {"text": sentences[i]}, topic=topic))
    return tuple(out)


def facts(language: str) -> list[dict]:
    """Every fact of the knowledge base rendered in ``language`` (``eng`` or a run language).

    Each fact is a dict: ``id`` (the same across languages, e.g. ``capital:italy``), ``type``,
    ``lang``, ``topic``, ``slots`` (the words that fill the templates), ``answer`` (the slot that
    holds the answer of the fact's questions), ``alt`` (template variant flag), ``group``,
    ``value`` (the number, for numeric facts) and ``pool`` (plausible wrong answers, or None).
    """
    check_language(language, allow_eng=True)
    return [dict(f, slots=dict(f["slots"]), pool=list(f["pool"]) if f["pool"] else None)
            for f in _facts(language)]


_ALT = re.compile(r"\[([^\[\]|]*)\|([^\[\]|]*)\]")
_FRA_QUE = re.compile(r"\bque (?=[aeiouéèêàâîôûAEIOUÉÈÊÀÂÎÔÛ])(?!onz)")
_FRA_DE_UN = re.compile(r"\bde (?=une?\b)")


def render(template: str, fact: dict) -> str:
    """Fill ``template`` with the fact's slots, pick ``[a|b]`` variants, capitalize the start."""
    text = _ALT.sub(lambda m: m.group(2) if fact["alt"] else m.group(1), template)
    text = text.format(**fact["slots"])
    if fact["lang"] == "fra":  # elision: "que une heure" -> "qu'une heure", "de un" -> "d'un"
        text = _FRA_DE_UN.sub("d'", _FRA_QUE.sub("qu'", text))
    return capitalize(text)


def capitalize(text: str) -> str:
    """Upper-case the first letter, also after an opening ``¿`` or ``¡``; leave digits alone."""
    k = 1 if text[:1] in "¿¡" else 0
    if text[k:k + 1].isalpha():
        return text[:k] + text[k].upper() + text[k + 1:]
    return text


def templates(ftype: str, lang: str) -> dict:
    """The templates of one fact type in one language (``train``, ``question``, ``sft``)."""
    return TEMPLATES[ftype][lang]
